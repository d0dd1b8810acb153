"""The README's worked example of a new decay runs as written, and the README keeps its promises
of length and of references that stay inside the repository."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    part = README.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def test_new_decay_example_runs(tmp_path, monkeypatch, capsys):
    code = _block_after("## Adding an ablation")
    assert len(code.strip().splitlines()) <= 30
    monkeypatch.setenv("LRD_CACHE_DIR", str(tmp_path))
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    table = ns["table"]
    assert len(table) == 4 and set(table["decay_strength"]) == {0.0, 0.01}
    assert (table["status"] == "ok").all()
    assert "final_val_acc" in capsys.readouterr().out


def test_readme_is_short_and_refers_inside_the_repository():
    assert len(README.splitlines()) <= 150
    for doc in (README, (ROOT / "paper" / "results" / "README.md").read_text()):
        assert "../shared" not in doc and "MISSION" not in doc and "STYLE.md" not in doc
