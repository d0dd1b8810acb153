"""The code is ruff-clean (the configuration is in pyproject.toml): `make lint` and CI agree."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: it is in the test extra (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", "lrdlib", "tests", "benchmarks", "notebooks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_layers_import_one_way():
    """``lint-imports`` keeps the contract in pyproject.toml: analysis → runs → core, never upwards."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if tool is None:
        pytest.fail("lint-imports is not installed: it is in the test extra (pip install -e '.[test]')")
    out = subprocess.run([tool], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "1 kept, 0 broken" in out.stdout, out.stdout[-3000:]


def _imports(path: Path, package: str) -> set[str]:
    """Every lrdlib module ``path`` imports, at module level or inside a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            parts = package.split(".")
            base = node.module if not node.level else ".".join(parts[: len(parts) - node.level + 1] + [node.module])
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("lrdlib.")}


def test_no_import_cycle_counting_imports_inside_functions():
    pkg = ROOT / "lrdlib"
    mods = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__"): p
            for p in pkg.rglob("*.py")}
    edges = {m: {t for t in _imports(p, m) if t in mods and t != m and not mods[t].name == "__init__.py"}
             for m, p in mods.items() if p.name != "__init__.py"}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in edges.get(m, ()):
            visit(t)
        stack.pop()

    for m in edges:
        visit(m)
    assert not cycles, f"import cycles: {cycles[:3]}"
