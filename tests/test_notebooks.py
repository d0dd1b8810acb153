"""Every notebook executes end to end at ``profile=smoke`` (papermill), writing its figures
and results into temporary folders so the committed figures/ are not touched."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_clean_with_parameters_cell(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(params[0]["source"])
    assert "profile" in src and "device" in src


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    return tmp_path_factory.mktemp("nb")


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke(nb, sandbox, monkeypatch):
    papermill = pytest.importorskip("papermill")
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("LRD_CACHE_DIR", str(sandbox / "cache"))
    monkeypatch.setenv("LRD_OUTPUT_DIR", str(sandbox))   # figures/ and results/ there
    monkeypatch.setenv("TQDM_DISABLE", "1")
    # records go through a results store too (set LRD_STORE_DIR: a store at every profile), so the compact
    # records' code path (thinned spectra) runs here, not first at the paper profile
    monkeypatch.setenv("LRD_STORE_DIR", str(sandbox / "store"))
    kernel = "lrd-companion" if "lrd-companion" in KernelSpecManager().find_kernel_specs() else "python3"
    out = sandbox / nb.name
    papermill.execute_notebook(str(nb), str(out), parameters={"profile": "smoke", "device": "cpu"},
                               kernel_name=kernel, cwd=str(nb.parent), progress_bar=False)
    stem = nb.stem
    figs = list((sandbox / "figures").glob(f"{stem[:2]}_*.png"))
    assert figs, f"{nb.name} wrote no figure named {stem[:2]}_*.png"
    for png in figs:
        assert png.with_suffix(".pdf").exists(), f"{png.name} has no PDF twin"


@pytest.mark.slow
def test_regeneration_from_the_store_is_byte_stable(tmp_path, monkeypatch):
    """Notebook 02 at ``paper`` from (a copy of) the committed store, twice: the same bytes both times,
    and the bytes committed in figures/ and paper/results/chapters/ (regeneration leaves git clean)."""
    import shutil

    papermill = pytest.importorskip("papermill")
    results = ROOT / "paper" / "results"
    store = tmp_path / "results"
    for sub in ("runs", "weights", "measures"):
        shutil.copytree(results / sub, store / sub)
    monkeypatch.setenv("LRD_STORE_DIR", str(store / "runs"))
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = ROOT / "notebooks" / "02_polar_geometry.ipynb"
    made = []
    for run in ("a", "b"):
        monkeypatch.setenv("LRD_OUTPUT_DIR", str(tmp_path / run))
        papermill.execute_notebook(str(nb), str(tmp_path / f"{run}.ipynb"), parameters={"profile": "paper", "device": "cpu"},
                                   cwd=str(nb.parent), progress_bar=False)
        files = sorted((tmp_path / run / "figures").glob("02_*.*"))
        made.append({p.name: p.read_bytes() for p in files})
        chapter = store / "chapters" / "02_polar_geometry.json"
        made[-1]["chapter"] = chapter.read_bytes()
        chapter.unlink()
    assert made[0].keys() == made[1].keys() and len(made[0]) > 2
    assert [k for k in made[0] if made[0][k] != made[1][k]] == []
    committed = {k: (ROOT / "figures" / k).read_bytes() for k in made[0] if k != "chapter"}
    committed["chapter"] = (results / "chapters" / "02_polar_geometry.json").read_bytes()
    assert [k for k in made[0] if made[0][k] != committed[k]] == []


@pytest.mark.slow
def test_ctrl_c_stops_make_reproduce_cleanly(tmp_path):
    """Ctrl-C at a terminal: one line saying where it stopped, no traceback, no papermill or kernel left running."""
    import os
    import pty
    import select
    import shutil
    import subprocess
    import time

    if shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("needs make and the .venv that `make test` creates")
    out_dir = str(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)   # as at a terminal, even when the suite runs under nohup
        os.environ["LRD_OUTPUT_DIR"] = out_dir   # figures and results there: the committed ones stay untouched
        os.chdir(ROOT)
        os.execvp("make", ["make", "--no-print-directory", "reproduce", "NB=02"])
    out, t0, sent = b"", time.time(), None
    while time.time() - t0 < 120 and (sent is None or time.time() - sent < 30):
        if select.select([fd], [], [], 0.2)[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        if sent is None and b">>> [1/1]" in out and time.time() - t0 > 8:
            os.write(fd, b"\x03")
            sent = time.time()
    os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert sent is not None and "stopped in notebooks/02_polar_geometry.ipynb" in text
    assert "Traceback" not in text
    time.sleep(2)
    left = subprocess.run(["pgrep", "-f", "papermill notebooks/02_polar_geometry"], capture_output=True, text=True).stdout
    assert left == ""
