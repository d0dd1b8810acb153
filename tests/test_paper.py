"""The manuscript's number pipeline (paper/macros.py, paper/build.py): fast, no LaTeX needed.

Each check is tested on a planted violation in a temporary manuscript (so the test can fail) and
on the repository's own text and results files (so the paper passes it).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

PAPER = Path(__file__).resolve().parents[1] / "paper"


def _load(name: str, file: str):
    """paper/ is not a package: load its modules by path (``macros`` under its own name, as build.py imports it)."""
    spec = importlib.util.spec_from_file_location(name, PAPER / file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


M = _load("macros", "macros.py")
B = _load("paper_build", "build.py")

MAIN = r"""\documentclass{article}
\newcommand{\pending}[1]{[pending: #1]}
\newcommand{\todo}[1]{[TODO: #1]}
\newcommand{\figprofile}[1]{\ifcsname lrdfig@#1\endcsname [#1 not at paper]\fi}
\newcommand{\nuc}[1]{\lVert #1\rVert_*}
\newcommand{\fro}[1]{\lVert #1\rVert_F}
\newcommand{\uvt}{UV^\top}
\DeclareMathOperator{\srank}{srank}
\DeclareMathOperator{\NS}{NS}
\DeclareMathOperator{\tr}{tr}
\input{macros}
\begin{document}
\input{sections/body}
\end{document}
"""
MAPPING = """\
StepsLRD:   {from: 03_grokking_mechanism, key: [steps_to_grok, "LRD (seed, α 0.005)"], agg: count, format: d}
Ceiling:    {from: 03_grokking_mechanism, key: [ceiling], format: .2f}
Budget:     {from: 03_grokking_mechanism, key: [steps], format: ",d"}
Verdict:    {from: 03_grokking_mechanism, key: [verdicts, claim3, verdict], format: text}
ErrInit:    {from: 02_polar_geometry, key: [ns_relative_error, "cubic ×5 (seed)", Q/K init], format: .0%}
Slack:      {from: 02_polar_geometry, key: [fan_128_slack, "1.0"], format: .0e}
SVDRatio:   {from: 02_polar_geometry, key: [cost, 0, rows, {n: 128, batch: 1}, svd/ns_cubic5], format: .1f}
Trained:    {from: 02_polar_geometry, key: [cos_uv_w, "Q/K trained*", cos max], format: .2f}
Hours:      {from: run_times, key: ["*", seconds], agg: sum, divide: 3600, format: .1f}
"""
RESULTS_03 = {"profile": "paper", "steps": 4000, "ceiling": 0.5007,
              "steps_to_grok": {"LRD (seed, α 0.005)": [1650, None, 2400]},
              "verdicts": {"claim3": {"verdict": "does not hold", "sentence": "L2 at wd 1.0 grokked 3/3 (100% & more)"}},
              "ms_per_step": 37.25}
RESULTS_02 = {"profile": "paper", "ns_relative_error": {"cubic ×5 (seed)": {"Q/K init": 0.5783}},
              "fan_128_slack": {"1.0": -2.04e-13, "1.2": -0.02},
              "cos_uv_w": {"Q/K trained (LRD, 4000 steps)": {"cos max": 0.7983}},
              "cost": [{"rows": [{"n": 64, "batch": 1, "svd/ns_cubic5": 2.9}, {"n": 128, "batch": 1, "svd/ns_cubic5": 2.4057},
                                 {"n": 128, "batch": 4, "svd/ns_cubic5": 17.3}]}]}
BODY = r"""\section{Results}
LRD grokked in \StepsLRD runs of \Budget steps; the ceiling is \Ceiling and the verdict \Verdict.
Newton--Schulz is \ErrInit from $\uvt$; the slack is \Slack; SVD costs \SVDRatio times as much,
and $\cos$ is \Trained. The runs took \Hours hours. $p = 113$, width 128, two blocks, 2026.
"""


def manuscript(tmp_path: Path, body: str = BODY, results: dict | None = None) -> tuple[Path, Path]:
    """A small manuscript (main.tex, sections/body.tex, macros.yaml) and a results folder."""
    paper = tmp_path / "paper"
    (paper / "sections").mkdir(parents=True)
    (paper / "main.tex").write_text(MAIN)
    (paper / "sections" / "body.tex").write_text(body)
    (paper / "macros.yaml").write_text(MAPPING)
    res = tmp_path / "results"
    res.mkdir()
    for name, data in (results if results is not None else {"03_grokking_mechanism": RESULTS_03,
                                                             "02_polar_geometry": RESULTS_02}).items():
        (res / f"{name}.json").write_text(json.dumps(data))
    return paper, res


def problems(paper: Path, res: Path) -> dict[str, list[str]]:
    return M.check(paper=paper, results=res)


# ---------------------------------------------------------------- the clean case


def test_clean_manuscript_passes(tmp_path):
    paper, res = manuscript(tmp_path)
    assert all(not v for v in problems(paper, res).values()), problems(paper, res)


def test_values_rendered_and_pending(tmp_path):
    paper, res = manuscript(tmp_path)
    out = tmp_path / "macros.tex"
    table = M.write_macros(M.load_mapping(paper / "macros.yaml"), res, out)
    text = out.read_text()
    assert r"\newcommand{\StepsLRD}{2\xspace}" in text                      # count of non-null steps
    assert r"\newcommand{\Ceiling}{0.50\xspace}" in text
    assert r"\newcommand{\Budget}{4,000\xspace}" in text
    assert r"\newcommand{\ErrInit}{58\%\xspace}" in text
    assert r"\newcommand{\Slack}{\ensuremath{-2\times10^{-13}}\xspace}" in text
    assert r"\newcommand{\SVDRatio}{2.4\xspace}" in text                    # {n: 128, batch: 1} selector
    assert r"\newcommand{\Trained}{0.80\xspace}" in text                    # glob over the keys
    assert r"\newcommand{\Verdict}{does not hold\xspace}" in text
    assert r"\newcommand{\Hours}{\pending{run-times}\xspace}" in text       # no run_times.json: pending
    assert table.pending == {"run_times": ["Hours"]} and not table.errors
    (res / "run_times.json").write_text(json.dumps({"01_x": {"seconds": 3600}, "02_y": {"seconds": 5400}}))
    M.write_macros(M.load_mapping(paper / "macros.yaml"), res, out)
    assert r"\newcommand{\Hours}{2.5\xspace}" in out.read_text()            # "*" + sum + divide


def test_render_formats():
    assert M.render(0.5783, ".0%") == r"58\%"
    assert M.render(3.2e-4, ".1e") == r"\ensuremath{3.2\times10^{-4}}"
    assert M.render(12345, ",d") == "12,345"
    assert M.render(-0.02, ".2f") == r"\ensuremath{-}0.02"
    assert M.render("50% & $1_a$", "text") == r"50\% \& \$1\_a\$"
    assert M.render("ratio 0 [0, ∞], α ≥ 1", "text") == r"ratio 0 [0, \ensuremath{\infty}], \ensuremath{\alpha} \ensuremath{\ge} 1"
    assert M.render(float("inf"), ".2f") == r"\ensuremath{\infty}"
    with pytest.raises(M.NoValue):
        M.render("holds", ".2f")


def test_resolve_and_aggregate():
    data = {"a": [{"n": 1, "v": 10}, {"n": 2, "v": 20}], "b": {"x y": [1, None, 3]}, "c": {"k1": {"s": 1}, "k2": {"s": 2}}}
    assert M.resolve(data, ("a", (("n", 2),), "v")) == 20
    assert M.resolve(data, ("b", "x*", 0)) == 1
    assert M.aggregate(M.resolve(data, ("c", "*", "s")), "sum") == 3
    assert M.aggregate([1, None, 3], "count") == 2 and M.aggregate([1, None, 3], "len") == 3
    with pytest.raises(M.NoValue):                 # a median over runs that happened to grok: refused
        M.aggregate([1, None, 3], "median")
    with pytest.raises(M.NoValue):
        M.resolve(data, ("a", (("n", 3),), "v"))
    with pytest.raises(M.NoValue):
        M.resolve(data, ("nope",))
    assert M.parse_key("a.b.0") == ("a", "b", 0)


def test_mapping_validation(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("Bad1: {from: x, key: [a]}\ntextbf: {from: x, key: [a]}\nNoKey: {from: x}\nStar: {from: x, key: ['*']}\n")
    with pytest.raises(M.MappingError) as e:
        M.load_mapping(bad)
    msg = str(e.value)
    assert "Bad1" in msg and "textbf" in msg and "NoKey" in msg and "Star" in msg


# ---------------------------------------------------------------- planted violations


def test_undefined_macro_is_caught(tmp_path):
    paper, res = manuscript(tmp_path, BODY + "A typo: \\StepLRD, and \\Budget again.\n")
    found = problems(paper, res)["undefined macros"]
    assert found == ["sections/body.tex:5: \\StepLRD"]


def test_custom_command_drift_is_caught(tmp_path):
    paper, res = manuscript(tmp_path)
    (paper / "main.tex").write_text(MAIN.replace(r"\DeclareMathOperator{\tr}{tr}", r"\DeclareMathOperator{\rk}{rk}"))
    found = problems(paper, res)["custom commands (CUSTOM_COMMANDS vs main.tex)"]
    assert sorted(found) == ["\\rk: in main.tex only", "\\tr: in CUSTOM_COMMANDS only"]


def test_missing_value_is_caught_only_when_the_file_exists(tmp_path):
    r03 = {k: v for k, v in RESULTS_03.items() if k != "ceiling"}
    paper, res = manuscript(tmp_path, results={"03_grokking_mechanism": r03})
    found = problems(paper, res)["mapping entries without a value"]
    assert len(found) == 1 and found[0].startswith("\\Ceiling (03_grokking_mechanism.json")   # 02 absent: pending, not an error
    r03["ceiling"] = float("nan")
    (res / "03_grokking_mechanism.json").write_text(json.dumps(r03))
    assert len(problems(paper, res)["mapping entries without a value"]) == 1


def test_null_text_only_for_a_null_value(tmp_path):
    """``if_null: <text>`` prints the text where the notebook writes null on purpose (a median beyond the
    budget); a key path that does not resolve stays an error, and so does a null without ``if_null``."""
    r03 = {**RESULTS_03, "km": {"LRD": None, "L2": 1650.0}}
    paper, res = manuscript(tmp_path, results={"03_grokking_mechanism": r03, "02_polar_geometry": RESULTS_02})
    with (paper / "macros.yaml").open("a") as f:
        f.write('KMLRD: {from: 03_grokking_mechanism, key: [km, LRD], format: ",.0f", if_null: "> budget"}\n'
                'KMLTwo: {from: 03_grokking_mechanism, key: [km, L2], format: ",.0f", if_null: "> budget"}\n'
                'KMLuon: {from: 03_grokking_mechanism, key: [km, Luon], format: ",.0f", if_null: "> budget"}\n'
                'KMBare: {from: 03_grokking_mechanism, key: [km, LRD], format: ",.0f"}\n')
    mapping = M.load_mapping(paper / "macros.yaml")
    out = tmp_path / "macros.tex"
    table = M.write_macros(mapping, res, out)
    text = out.read_text()
    assert r"\newcommand{\KMLRD}{> budget\xspace}" in text and r"\newcommand{\KMLTwo}{1,650\xspace}" in text
    assert sorted(e.split(" ")[0] for e in table.errors) == ["\\KMBare", "\\KMLuon"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("X: {from: a, key: [b], if_null: 3}\n")
    with pytest.raises(M.MappingError, match="if_null must be a string"):
        M.load_mapping(bad)


@pytest.mark.parametrize("typed", [
    "The ceiling is 0.50.",                 # a macro's value in its own format
    "LRD took 37.2 ms per step.",           # a leaf no macro quotes, in the default .3g
    "It is 58\\,\\% away from it.",         # a leaf in a percent format the mapping uses for that file
    "The slack is $-2\\times10^{-13}$.",     # scientific notation
    "The budget was 4,000 steps.",          # thousands separator
    "and 17.3 for the batch",               # an entry inside a list of records
])
def test_typed_number_is_caught(tmp_path, typed):
    paper, res = manuscript(tmp_path, BODY + typed + "\n")
    found = problems(paper, res)["numbers typed instead of quoted"]
    assert len(found) == 1 and found[0].startswith("sections/body.tex:5:"), found


def test_trivial_and_non_prose_numbers_are_not_flagged(tmp_path):
    extra = ("Two blocks, 2 heads, year 2026, $p = 113$, $10^{-3}$, 0.99, Section~\\ref{sec:4000}, "
             "\\includegraphics[width=3.4in]{fig_4000}, \\cite{a2400}. % 4000 in a comment\n")
    paper, res = manuscript(tmp_path, BODY + extra)
    assert problems(paper, res)["numbers typed instead of quoted"] == []


def test_prose_tokens():
    toks = [t for t, _ in M.number_tokens("a $3.2\\times 10^{-4}$ b 1{,}234 c \\label{x:12} 7.5pt % 99\n 0.5")]
    assert toks == ["3.2e-4", "1,234", "0.5"]


# ---------------------------------------------------------------- build.py pieces


def test_scan_log_finds_what_fails_the_build():
    log = ("(./main.tex (./sections/a.tex\nOverfull \\hbox (12.5pt too wide) in paragraph at lines 10--12\n)"
           "\nLaTeX Warning: Reference `fig:x' on page 3 undefined on input line 7.\n"
           "Package natbib Warning: Citation `nobody2020' on page 1 undefined on input line 5.\n"
           "Output written on main.pdf (9 pages, 1234 bytes).\n")
    info = B.scan_log(log)
    assert info["refs"] == ["fig:x"] and info["cites"] == ["nobody2020"] and info["pages"] == 9
    assert info["overfull"] == [(12.5, "sections/a.tex", "10--12")]
    assert not B.report_log(info)
    assert B.report_log(B.scan_log("Output written on main.pdf (2 pages, 1 bytes).\n"))


def test_flatten_inlines_inputs_and_drops_comments(tmp_path):
    (tmp_path / "sections").mkdir()
    (tmp_path / "sections" / "a.tex").write_text("Body % secret TODO\n\\includegraphics[width=\\textwidth]{03_rank}\n")
    (tmp_path / "macros.tex").write_text("\\newcommand{\\X}{1\\xspace}\n")
    flat = B.flatten("\\input{macros}\n% drop me\n\\input{sections/a}\n50\\% kept\n", tmp_path)
    assert "\\newcommand{\\X}" in flat and "Body %" in flat and "secret" not in flat and "drop me" not in flat
    assert "50\\% kept" in flat and "\\input" not in flat
    assert B.figures_used(flat) == ["03_rank"]


def _store_and_chapters(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """Two CUDA-made and two CPU runs (the store's reader stubbed: these are not full run records), a
    benchmarks folder beside the store and a chapters folder."""
    store, chapters = tmp_path / "results" / "runs", tmp_path / "results" / "chapters"
    store.mkdir(parents=True)
    runs = [("NVIDIA H100 80GB HBM3", "cuda", 3000, 20.0), ("NVIDIA H100 80GB HBM3", "cuda", 2000, 30.0),
            ("cpu", "cpu", 700, 10.5), (None, "cpu", 300, 20.0)]           # the last names no device: a CPU run
    recs = []
    for dev, cfg_dev, steps, wall in runs:
        recs.append({"wall_time_s": wall, "steps_run": steps, "config": {"device": cfg_dev}})
        if dev:
            recs[-1]["device"] = dev
    monkeypatch.setattr(B, "_records", lambda where: iter(recs) if where == store else iter(()))
    (store.parent / "benchmarks").mkdir()
    (store.parent / "benchmarks" / "step_time_cuda_x.json").write_text(json.dumps({"device_name": "H100", "torch": "2.x", "rows": [
        {"method": "LRD", "mode": "eager", "lrdlib_ms": 7.5, "reference_ms": 19.0, "ratio": 2.53},
        {"method": "LRD", "mode": "compiled", "lrdlib_ms": 1.0, "reference_ms": 19.0, "ratio": 19.0}]}))
    chapters.mkdir()
    cost = {"runs": 3, "steps": 5700, "train_seconds": 60.5, "devices": ["NVIDIA H100 80GB HBM3", "cpu"],
            "by_device": {"NVIDIA H100 80GB HBM3": 2, "cpu": 1}}
    (chapters / "04_phase_diagram.json").write_text(json.dumps({"profile": "paper", "cost": cost}))
    (chapters / "05_ablations.json").write_text(json.dumps({"own_best": {"cost": {"runs": 1, "steps": 300, "train_seconds": 20.0,
                                                                                    "by_device": {"cpu": 1}}}}))
    (chapters / "02_polar_geometry.json").write_text(json.dumps({"cost": [{"rows": []}]}))   # a benchmark, not a run cost
    (chapters / "01_scale_invariance.json").write_text(json.dumps({"profile": "paper"}))
    return store, chapters


def test_run_times_from_the_store_records_alone(tmp_path, monkeypatch):
    store, chapters = _store_and_chapters(tmp_path, monkeypatch)
    t = B.run_times(store, chapters)
    assert set(t) == {"store", "by_device", "gpu", "chapters"}          # nothing from a log of sittings or checks
    assert t["store"] == {"runs": 4, "steps": 6000, "train_seconds": 80.5}
    assert t["by_device"] == {"NVIDIA H100 80GB HBM3": {"runs": 2, "steps": 5000, "train_seconds": 50.0, "steps_per_second": 100.0},
                              "cpu": {"runs": 2, "steps": 1000, "train_seconds": 30.5, "steps_per_second": 1000 / 30.5}}
    g = t["gpu"]
    assert g["devices"] == ["NVIDIA H100 80GB HBM3"] and g["runs"] == 2 and g["steps"] == 5000
    assert g["train_seconds"] == 50.0 and g["steps_per_second"] == 100.0
    assert g["step_time"] == {"LRD": {"lrdlib_ms": 7.5, "reference_ms": 19.0, "ratio": 2.53, "device": "H100", "torch": "2.x"}}
    assert t["chapters"] == {
        "04_phase_diagram": {"runs": 3, "steps": 5700, "train_seconds": 60.5, "by_device": {"NVIDIA H100 80GB HBM3": 2, "cpu": 1},
                             "part": "chapter"},
        "05_ablations": {"runs": 1, "steps": 300, "train_seconds": 20.0, "by_device": {"cpu": 1}, "part": "own_best"}}


def test_run_times_without_a_gpu_run(tmp_path, monkeypatch):
    store, chapters = tmp_path / "runs", tmp_path / "chapters"
    monkeypatch.setattr(B, "_records", lambda where: iter([{"wall_time_s": 10.0, "steps_run": 100, "device": "cpu"}]))
    t = B.run_times(store, chapters)                                    # no chapters folder: no chapter costs
    assert t["store"] == {"runs": 1, "steps": 100, "train_seconds": 10.0} and t["chapters"] == {}
    assert t["gpu"] == {"devices": [], "runs": 0, "steps": 0, "train_seconds": 0, "steps_per_second": None, "step_time": {}}


def test_run_times_read_record_files_when_the_store_module_is_missing(tmp_path, monkeypatch):
    import gzip

    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "ab1.json.gz").write_bytes(gzip.compress(json.dumps({"wall_time_s": 1.5}).encode()))
    (tmp_path / "ab" / "ab2.json").write_text(json.dumps({"wall_time_s": 2.0}))
    monkeypatch.setitem(sys.modules, "lrdlib.runs.store", None)         # its import fails
    assert sorted(r["wall_time_s"] for r in B._records(tmp_path)) == [1.5, 2.0]


def test_run_times_go_to_the_build_folder_not_the_results(tmp_path, monkeypatch):
    """The paper's run times are read from build/paper/run_times.json (M.RUN_TIMES), which build.py
    writes; a run_times.json in paper/results/chapters is ignored; any other results folder keeps its own."""
    store, chapters = _store_and_chapters(tmp_path, monkeypatch)
    out = tmp_path / "build" / "paper" / "run_times.json"
    monkeypatch.setattr(M, "RUN_TIMES", out)
    monkeypatch.setattr(M, "RESULTS", chapters)
    times = {"store": {"runs": 4, "steps": 6000, "train_seconds": 80.5}, "gpu": {"runs": 2, "devices": ["H100"]}}
    monkeypatch.setattr(B, "run_times", lambda chapters=None: times)
    (chapters / "run_times.json").write_text(json.dumps({"store": {"runs": 99}}))   # a stale committed copy
    assert M.run_times_file(chapters) == out and M.run_times_file(tmp_path / "other") == tmp_path / "other" / "run_times.json"
    assert "run_times" not in M.load_results(chapters)                 # not written yet: pending, not the stale copy
    B.refresh_run_times(tmp_path / "other")                             # not the paper's results: writes nothing
    assert not out.exists()
    before = sorted(p.name for p in chapters.iterdir())
    B.refresh_run_times(chapters)
    assert json.loads(out.read_text()) == times
    assert sorted(p.name for p in chapters.iterdir()) == before         # nothing written into the results folder
    assert M.load_results(chapters)["run_times"] == times


# ---------------------------------------------------------------- the repository's manuscript


def test_figures_carry_their_profile(tmp_path):
    """A figure without \\figprofile{name} in its environment, or missing from figures/profiles.json,
    fails the check; macros.tex marks exactly the figures not made at the paper profile."""
    paper, res = manuscript(tmp_path, BODY + "\n".join([
        r"\begin{figure}\includegraphics[width=2in]{03_a}\caption{A.\figprofile{03_a}}\end{figure}",
        r"\begin{figure*}\includegraphics{04_b}\caption{B.}\end{figure*}",
        r"\begin{figure}\includegraphics{05_c}\caption{C.\figprofile{05_c}}\end{figure}", ""]))
    figs = tmp_path / "figures"
    figs.mkdir()
    (figs / "profiles.json").write_text(json.dumps({"03_a": "paper", "04_b": "quick"}))
    found = problems(paper, res)["figures without their profile"]
    assert found == ["sections/body.tex: 04_b: no \\figprofile{04_b} in its figure environment",
                     "sections/body.tex: 05_c: not in figures/profiles.json (save it with save_figure(..., profile=profile))"]
    lines = M.figure_profile_lines(figs)
    assert [ln for ln in lines if "lrdfig@" in ln] == [r"\expandafter\def\csname lrdfig@04_b\endcsname{quick}"]


def test_repository_mapping_loads():
    mapping = M.load_mapping()
    assert len(mapping) > 50
    assert {m.source for m in mapping.values()} >= {p.stem for p in (PAPER.parent / "notebooks").glob("0[1-7]_*.ipynb")}


def test_repository_text_passes_every_check():
    found = M.check()                       # against paper/results/chapters, whatever is present there
    assert all(not v for v in found.values()), found


def test_repository_run_time_macros_come_from_the_store():
    """Every ``from: run_times`` macro has a value in the run times computed from the committed store's
    records (and the chapters' ``cost``), and the store's totals add up over the device types."""
    t = B.run_times()
    assert t["store"]["runs"] == sum(d["runs"] for d in t["by_device"].values()) > 0
    assert t["store"]["steps"] == sum(d["steps"] for d in t["by_device"].values())
    rt = [m for m in M.load_mapping().values() if m.source == "run_times"]
    assert rt
    for m in rt:
        v = M.value_of(m, t)
        assert v is not M.NULL, m.name


def test_paper_names_no_sittings_log():
    """The manuscript and its tooling use the store alone: no sittings or verify log, no run_times.json
    among the committed results, no lrdlib.chunks, no `make paper-runs`."""
    gone = ("sittings.jsonl", "verify.jsonl", "lrdlib.chunks", "paper-runs", "chapters/run_times.json", "sitting")
    for f in sorted(PAPER.rglob("*")):
        if (f.suffix in {".tex", ".py", ".yaml", ".md", ".bib"} and f.name != "macros.tex"
                and "runs" not in f.relative_to(PAPER).parts):
            text = f.read_text(encoding="utf-8").lower()
            assert not [g for g in gone if g in text], f


def test_repository_figures_exist_and_are_referenced():
    texts = M.read_texts()
    body = "\n".join(M.strip_comments(t) for t in texts.values())
    figs = B.figures_used(body)
    assert figs, "the manuscript includes no figure"
    for name in figs:
        assert (PAPER.parent / "figures" / f"{name}.pdf").exists(), name
    import re
    labels = re.findall(r"\\label\{(fig:[^}]+)\}", body)
    for label in labels:
        assert re.search(r"\\[cC]ref\{[^}]*\b" + re.escape(label) + r"\b", body), f"figure {label} is never referenced"


# The verdicts that the words around them assume (conclusion, fair comparison, abstract): a rerun that
# turns one of them must fail here, so the prose is rewritten with it, not left saying the opposite.
PROSE_ASSUMES = {
    "PDVerdictExpansion": "does not hold", "PDBeforeExpansion": "holds", "PDVerdictFasterLRD": "holds",
    "GMVerdictLRDNotLTwo": "holds", "GMVerdictSeedLTwoFails": "does not hold", "GMVerdictPrecondition": "does not hold",
    "ABVerdictTangential": "does not hold", "ELRVerdictC": "holds", "CTClassRecall": "slower",
}


def test_prose_matches_the_verdicts_it_words():
    mapping = M.load_mapping()
    files = M.load_results(M.RESULTS)
    for name, expected in PROSE_ASSUMES.items():
        m = mapping[name]
        if m.source not in files:
            continue                       # pending: the text prints "[pending]", not a wrong word
        assert M.value_of(m, files[m.source]) == expected, f"\\{name}: the text around it assumes {expected!r}"
    ab = files.get("05_ablations")
    if ab is not None:
        # "the radial and the tangential parts of the step each grok on their own"
        n = ab["verdicts"]["tangential_mechanism"]["numbers"]
        assert 2 * n["radial"][0] >= n["radial"][1] and 2 * n["tangential"][0] >= n["tangential"][1]
    pd = files.get("04_phase_diagram")
    if pd is not None:
        # "tuned L2 groks for at least half of its seeds wherever LRD does, down to the smallest fraction tried"
        assert pd["verdicts"]["expansion_vs_l2"]["LRD"]["numbers"]["a_only"] == []
        assert pd["headline"]["per_method"]["L2"]["at_lowest_tried"] is True
        # "the first table's one cell of expansion was L2 left at [its search seed's] strength"
        assert len(pd["verdicts"]["before_confirmation"]["expansion_vs_l2"]["LRD"]["numbers"]["a_only"]) == 1
        # "Luon groks for at least half of its seeds only from a train fraction of [its headline] up"
        assert pd["headline"]["per_method"]["Luon"]["larger_fractions_below_level"] == []
        assert pd["confirmation"]["replaced"] == pd["verdicts"]["before_confirmation"]["expansion_vs_l2"]["LRD"]["numbers"]["a_only"]
    elr = files.get("07_effective_learning_rate")
    if elr is not None:
        fac = {n: M.value_of(mapping[n], elr) for n in ("ELRFacNoneLo", "ELRFacNoneHi", "ELRFacLRDHi", "ELRFacLTwoHi")}
        # abstract, mechanism, conclusion: "with [the other parameters' decay] matched, LRD groks in X steps, tuned L2 in Y"
        assert fac["ELRFacLRDHi"] is not None and (fac["ELRFacLTwoHi"] is None or fac["ELRFacLRDHi"] < fac["ELRFacLTwoHi"])
        # "raising this decay ... moves median steps from X to Y" (several-fold)
        assert fac["ELRFacNoneHi"] is not None and (fac["ELRFacNoneLo"] is None or fac["ELRFacNoneLo"] >= 3 * fac["ELRFacNoneHi"])
