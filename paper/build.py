"""Build the manuscript: numbers -> macros.tex, checks, latexmk -> build/paper/main.pdf, arXiv tarball.

    python paper/build.py pdf      [--results DIR]   macros, checks, PDF (what `make paper` runs)
    python paper/build.py arxiv    [--results DIR]   the PDF, then build/paper/arxiv.tar.gz, compiled once more on its own
    python paper/build.py macros   [--results DIR]   only paper/macros.tex, and the list of pending sections
    python paper/build.py check    [--results DIR]   only the checks of paper/macros.py (no LaTeX needed)
    add --lenient to pdf/arxiv/check to report entries without a value as warnings (smoke/quick results)
    python paper/build.py runtimes [--out FILE]      run_times.json from paper/results/sittings.jsonl and the store
                                                     (pdf does this itself for the paper's own results)

``--results`` (default paper/results/chapters) is the folder of chapter results files
``<notebook>.json``; ``--results build/results`` builds the text against the numbers of the last
``make reproduce`` instead (any profile: for checking the pipeline, never for the paper).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import macros as M  # noqa: E402

PAPER = M.PAPER
ROOT = PAPER.parent
OUT = ROOT / "build" / "paper"
FIGURES = ROOT / "figures"
APT = "apt-get install latexmk texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended"


# ---------------------------------------------------------------- macros and checks


def make_macros(results: Path) -> M.MacroTable:
    """Write paper/macros.tex and print which sections still wait for which results file."""
    mapping = M.load_mapping()
    table = M.write_macros(mapping, results)
    texts = M.read_texts()
    usage = M.macro_usage(texts, mapping)
    unused = sorted(set(mapping) - set(usage))
    n_pending = sum(map(len, table.pending.values()))
    print(f"macros: {len(mapping)} from {M._display(results)} -> {M._display(M.MACROS_TEX)}; "
          f"{len(mapping) - n_pending - len(table.errors)} with values, {n_pending} pending (no results file)"
          + (f", {len(table.errors)} without a value in a present file" if table.errors else ""))
    if table.pending:
        print("sections waiting for results (paper-profile run not finished):")
        for source, names in sorted(table.pending.items()):
            files = sorted({f for n in names for f in usage.get(n, ())})
            print(f"  {source}.json: {len(names)} macros, used in {', '.join(files) or 'no section'}")
    if unused:
        print(f"mapping entries no section uses ({len(unused)}): {', '.join(unused)}")
    return table


def run_checks(results: Path, lenient: bool = False) -> bool:
    """Print every problem the checks of paper/macros.py find; True when there is none (with
    ``lenient``, entries without a value are warnings: for building against smoke or quick results,
    whose notebooks skip arms and fractions)."""
    ok = True
    for name, problems in M.check(results=results).items():
        if problems and lenient and name == "mapping entries without a value":
            print(f"warning (--lenient): {name} ({len(problems)}), shown as [pending: NN?]:")
            for p in problems:
                print(f"  {p}")
        elif problems:
            ok = False
            print(f"CHECK FAILED: {name} ({len(problems)}):")
            for p in problems:
                print(f"  {p}")
    if ok:
        print("checks passed: no undefined macro, " + ("" if lenient else "every present results file has the values the "
              "mapping asks for, ") + "no number typed instead of quoted")
    return ok


# ---------------------------------------------------------------- LaTeX


def need_latexmk() -> None:
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        print("latexmk / pdflatex not found. On Debian or Ubuntu install them with:\n"
              f"  {APT}\n(poppler-utils as well to render pages with pdftoppm)", file=sys.stderr)
        sys.exit(3)


def tex_env() -> dict:
    # one log line per message, so warnings can be matched whole
    return {**os.environ, "max_print_line": "10000", "error_line": "254", "half_error_line": "238"}


def scan_log(log: str) -> dict:
    """Undefined references and citations, overfull boxes, the page count, from a LaTeX log."""
    undefined_refs = sorted(set(re.findall(r"LaTeX Warning: Reference `([^']+)' on page", log)))
    undefined_cites = sorted(set(re.findall(r"Citation `([^']+)' on page \S+ undefined", log)))
    missing_files = sorted(set(re.findall(r"(?:LaTeX Warning: File|! LaTeX Error: File) `([^']+)' not found", log)))
    overfull = []
    box = re.compile(r"Overfull \\[hv]box \(([\d.]+)pt too \w+\) (?:in paragraph|in alignment|detected) at lines? (\d+(?:--\d+)?)")
    for m in box.finditer(log):
        opened = re.findall(r"\(\./([\w/.-]+\.tex)", log[:m.start()])
        overfull.append((float(m.group(1)), opened[-1] if opened else "main.tex", m.group(2)))
    pages = re.search(r"Output written on .*?\((\d+) pages?", log)
    return {"refs": undefined_refs, "cites": undefined_cites, "files": missing_files, "overfull": overfull,
            "pages": int(pages.group(1)) if pages else None, "rerun": "Rerun to get" in log}


def report_log(info: dict, label: str = "") -> bool:
    """Print the log scan; True when nothing that fails the build was found."""
    ok = not (info["refs"] or info["cites"] or info["files"])
    for key, what in (("refs", "undefined references"), ("cites", "undefined citations"), ("files", "missing files")):
        if info[key]:
            print(f"ERROR{label}: {what}: {', '.join(info[key])}")
    if info["overfull"]:
        print(f"warning{label}: {len(info['overfull'])} overfull box(es):")
        for pt, f, lines in info["overfull"]:
            print(f"  {pt:.1f}pt too wide near {f}, lines {lines}")
    else:
        print(f"no overfull boxes{label}")
    return ok


def latex_error(log: str) -> str:
    i = log.find("\n!")
    return log[i:i + 1200] if i >= 0 else log[-1200:]


def build_pdf(results: Path, lenient: bool = False) -> Path:
    if results == M.RESULTS.resolve():    # the paper's own results: the run times from the committed sittings log
        write_run_times(results / "run_times.json")
    make_macros(results)
    checks_ok = run_checks(results, lenient)
    need_latexmk()
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", f"-outdir={OUT}", "main.tex"]
    print("$ (cd paper && " + " ".join(cmd) + ")")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=PAPER, env=tex_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log_path = OUT / "main.log"
    log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    if done.returncode != 0:
        blg = OUT / "main.blg"
        bib_errors = [ln for ln in blg.read_text(errors="replace").splitlines()
                      if "---line" in ln or ln.startswith("I couldn't")] if blg.exists() else []
        print(f"latexmk failed (exit {done.returncode}) after {seconds:.1f} s")
        if bib_errors:
            print(f"bibtex errors ({M._display(blg)}):\n  " + "\n  ".join(bib_errors))
        elif "\n!" in log:
            print(f"the first error in {M._display(log_path)}:\n{latex_error(log)}")
        else:
            print((done.stdout + done.stderr)[-3000:])
        sys.exit(1)
    info = scan_log(log)
    pdf = OUT / "main.pdf"
    print(f"built {M._display(pdf)}: {info['pages']} pages in {seconds:.1f} s")
    blg = OUT / "main.blg"
    if blg.exists():
        warn = [ln for ln in blg.read_text(errors="replace").splitlines() if ln.startswith("Warning--")]
        for w in warn:
            print(f"bibtex {w}")
    log_ok = report_log(info)
    if not (log_ok and checks_ok):
        print("build FAILED: see the errors above")
        sys.exit(1)
    return pdf


# ---------------------------------------------------------------- arXiv


def flatten(tex: str, base: Path, seen: tuple = ()) -> str:
    """``tex`` with every ``\\input{file}`` replaced by that file's text (recursively) and comments
    dropped (each ``%`` kept, so line ends that a ``%`` protects stay protected)."""
    tex = re.sub(r"(?<!\\)%.*", "%", tex)

    def inline(m):
        name = m.group(1)
        path = base / (name if name.endswith(".tex") else name + ".tex")
        if not path.exists() or path in seen:
            raise SystemExit(f"arxiv: cannot inline \\input{{{name}}} ({path})")
        return flatten(path.read_text(encoding="utf-8"), base, (*seen, path)).rstrip("\n") + "\n"

    return re.sub(r"\\input\{([^}]+)\}", inline, tex)


def figures_used(tex: str) -> list[str]:
    return sorted(set(re.findall(r"\\includegraphics(?:\[[^\]]*\])?\{([^}]+)\}", tex)))


def build_arxiv(results: Path, lenient: bool = False) -> Path:
    build_pdf(results, lenient)
    bbl = OUT / "main.bbl"
    if not bbl.exists():
        raise SystemExit("arxiv: build/paper/main.bbl missing after the PDF build")
    tex = flatten((PAPER / "main.tex").read_text(encoding="utf-8"), PAPER)
    tex = tex.replace(r"\graphicspath{{../figures/}}", r"\graphicspath{{figures/}}")
    tex = "\\pdfoutput=1\n" + tex
    figs = figures_used(tex)
    files = {"main.tex": tex.encode(), "main.bbl": bbl.read_bytes()}
    for name in figs:
        path = FIGURES / (name if Path(name).suffix else name + ".pdf")
        if not path.exists():
            raise SystemExit(f"arxiv: figure {name} not found in {M._display(FIGURES)}")
        files[f"figures/{path.name}"] = path.read_bytes()
    tarball = OUT / "arxiv.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, fileobj=__import__("io").BytesIO(data))
    print(f"wrote {M._display(tarball)}: main.tex (flattened, macros inlined), main.bbl, {len(figs)} figures, "
          f"{tarball.stat().st_size / 1024:.0f} KiB")
    verify_arxiv(tarball)
    return tarball


def verify_arxiv(tarball: Path) -> None:
    """Extract the tarball to a temporary folder and run pdflatex twice there, as arXiv would."""
    with tempfile.TemporaryDirectory(prefix="arxiv-") as d:
        with tarfile.open(tarball) as tar:
            tar.extractall(d, filter="data")
        for i in (1, 2):
            done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"], cwd=d,
                                  env=tex_env(), capture_output=True, text=True)
            if done.returncode != 0:
                log = (Path(d) / "main.log").read_text(errors="replace")
                print(f"arxiv: pdflatex pass {i} failed in the extracted tarball:\n{latex_error(log)}")
                sys.exit(1)
        info = scan_log((Path(d) / "main.log").read_text(errors="replace"))
        print(f"arxiv: the extracted tarball compiles on its own (pdflatex twice): {info['pages']} pages")
        if not report_log(info, label=" (arxiv)"):
            sys.exit(1)


# ---------------------------------------------------------------- run times


def run_times(sittings: Path = ROOT / "paper" / "results" / "sittings.jsonl",
              store: Path = ROOT / "paper" / "results" / "runs") -> dict:
    """What the paper profile cost, measured: per notebook, the wall-clock seconds of its logged
    sittings of ``make paper-runs`` (``lrdlib.chunks.sitting_totals``; ``seconds`` is null until the
    notebook is complete and every sitting of it was timed), and for the whole store the number of
    runs and the sum of their own measured training times (``wall_time_s``; a process pool trains
    two at a time on 2 cores). ``total_seconds`` is null until every notebook is complete."""
    from lrdlib.chunks import sitting_totals

    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    entries = [json.loads(line) for line in sittings.read_text().splitlines() if line.strip()] if sittings.exists() else []
    per = sitting_totals(entries)
    notebooks = {}
    for stem in stems:
        t = per.get(stem, {"seconds": 0.0, "seconds_timed": 0.0, "sittings": 0, "new_records": 0, "complete": False,
                           "machines": []})
        notebooks[stem] = {**t, "seconds": t["seconds"] if t["complete"] else None}
    from lrdlib.store import ResultStore

    walls = [r.get("wall_time_s") for r in ResultStore(store).records()]
    done = [v["seconds"] for v in notebooks.values()]
    machines = sorted({m for v in notebooks.values() for m in v["machines"]})
    return {"notebooks": notebooks, "gpu": _gpu_part(entries, Path(store)),
            "total_seconds": sum(done) if done and all(v is not None for v in done) else None,
            "logged_seconds": sum(v["seconds_timed"] for v in notebooks.values()),
            "complete": [s for s, v in notebooks.items() if v["complete"]],
            "store": {"runs": len(walls), "train_seconds": round(sum(w or 0 for w in walls), 1)},
            "machine": "; ".join(machines) or None, "verify": _verify_part(Path(store).parent / "verify.jsonl")}


def _verify_part(log: Path) -> dict:
    """``make verify``'s committed log in numbers (``lrdlib.verify.summarise_checks``)."""
    from lrdlib.verify import summarise_checks

    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    return summarise_checks(entries)


def _gpu_part(entries: list[dict], store: Path) -> dict:
    """The part of the paper profile made on a GPU: its sittings (time, new records), the stored runs
    whose config names a CUDA device (steps trained) and the step-time benchmark on that device
    (``paper/results/benchmarks/step_time_cuda*.json``: ms per step, lrdlib eager and the seed-style loop)."""
    gpu = [e for e in entries if str(e.get("machine", "")).startswith("cuda")]
    from lrdlib.store import ResultStore

    recs = list(ResultStore(store).records())
    recs = [r for r in recs if str(r.get("config", {}).get("device", "cpu")).startswith("cuda")]
    bench = {}
    for p in sorted((store.parent / "benchmarks").glob("step_time_cuda*.json")):
        b = json.loads(p.read_text())
        for row in b["rows"]:
            if row["mode"] == "eager":
                bench[row["method"]] = {"lrdlib_ms": row["lrdlib_ms"], "reference_ms": row["reference_ms"],
                                        "ratio": row["ratio"], "device": b["device_name"], "torch": b["torch"]}
    secs = sum(e.get("seconds") or 0.0 for e in gpu)
    steps = int(sum(r.get("steps_run") or 0 for r in recs))
    return {"sittings": len(gpu), "seconds": secs, "new_records": sum(e.get("new_records") or 0 for e in gpu),
            "machines": sorted({e["machine"] for e in gpu}), "runs": len(recs), "steps": steps,
            "steps_per_second": steps / secs if secs else None, "step_time": bench}


def write_run_times(out: Path) -> dict:
    """``run_times()`` to ``out`` (JSON), with a one-line summary."""
    times = run_times()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
    st = times["store"]
    print(f"wrote {M._display(out)}: complete {', '.join(times['complete']) or 'none'}; "
          f"{times['logged_seconds'] / 3600:.1f} h of logged sittings; "
          f"{st['runs']} stored runs, {st['train_seconds'] / 3600:.1f} h of training summed over runs")
    return times


# ---------------------------------------------------------------- command line


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["pdf", "arxiv", "macros", "check", "runtimes"])
    ap.add_argument("--results", type=Path, default=M.RESULTS, help="folder of <notebook>.json chapter results")
    ap.add_argument("--out", type=Path, help="runtimes: output file (default <results>/run_times.json)")
    ap.add_argument("--lenient", action="store_true",
                    help="pdf/arxiv/check: entries whose present results file lacks their key are warnings, not errors "
                         "(smoke and quick results skip arms and fractions)")
    a = ap.parse_args(argv)
    results = a.results.resolve()
    if a.command == "pdf":
        build_pdf(results, a.lenient)
    elif a.command == "arxiv":
        build_arxiv(results, a.lenient)
    elif a.command == "macros":
        t = make_macros(results)
        if t.errors:
            print("entries whose results file is present but has no value:\n  " + "\n  ".join(t.errors))
            sys.exit(1)
    elif a.command == "check":
        sys.exit(0 if run_checks(results, a.lenient) else 1)
    else:
        write_run_times(a.out or results / "run_times.json")


if __name__ == "__main__":
    main()
