"""environment.yml (conda) and pyproject.toml (pip) must declare the same dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "jupyter-client": "jupyter_client"}  # pip name -> conda-forge name


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_matches_pyproject():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = proj["optional-dependencies"]
    assert "lrdlib[test]" in extras["dev"]
    specs = [s for group in (proj["dependencies"], extras["cluster"], extras["test"], extras["dev"]) for s in group
             if not s.startswith("lrdlib[")]
    pip_deps = dict(_split(s) for s in specs)
    pip_deps = {CONDA_NAMES.get(k, k): v.replace("==", "=") for k, v in pip_deps.items()}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = dict(_split(d) for d in env["dependencies"] if isinstance(d, str) and d not in ("pip",))
    python = conda.pop("python")
    assert python == "=3.11"
    assert conda == pip_deps, f"environment.yml and pyproject.toml differ: {set(conda.items()) ^ set(pip_deps.items())}"
    assert proj["requires-python"] == ">=3.11"


def test_pins_live_in_the_constraints_file_the_makefile_uses():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch>=2.9" in proj["dependencies"]           # what the package needs (torch.optim.Muon)
    pins = dict(ln.split("==") for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#"))
    assert pins["torch"] == "2.13.0"                      # the CPU build on local disk, the figures' version
    # byte-stable figures need the plotting and font libraries pinned too; every pin is exact
    assert {"matplotlib", "fonttools", "pillow", "seaborn", "numpy", "scipy"} <= set(pins)
    declared = {s.split(">=")[0] for s in proj["dependencies"]}
    assert {"numpy", "scipy", "pandas", "matplotlib", "seaborn"} <= declared
    make = (ROOT / "Makefile").read_text()
    assert make.count("-c constraints.txt") >= 2 and "torch==" not in make


def test_every_third_party_test_import_is_declared():
    import ast
    import sys

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_split(s)[0] for s in proj["dependencies"] + proj["optional-dependencies"]["test"]}
    dist = {"yaml": "pyyaml", "jupyter_client": "jupyter-client"}
    used = set()
    for f in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                used.add(node.module.split(".")[0])
    local = {f.stem for f in (ROOT / "tests").glob("*.py")} | {"tests"}   # conftest, ns_reference, tests.*: the tests' own helpers
    third = {m for m in used if m not in sys.stdlib_module_names and m != "lrdlib" and m not in local}
    missing = {m for m in third if dist.get(m, m) not in declared}
    assert not missing, f"tests import undeclared packages: {sorted(missing)}"


def test_license_and_citation():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT" and cff["title"]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme
