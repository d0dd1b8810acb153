"""Build the manuscript: numbers -> macros.tex, checks, latexmk -> build/paper/main.pdf, arXiv tarball.

    python paper/build.py pdf      [--results DIR]   macros, checks, PDF (what `make paper` runs)
    python paper/build.py arxiv    [--results DIR]   the PDF, then build/paper/arxiv.tar.gz, compiled once more on its own
    python paper/build.py macros   [--results DIR]   only paper/macros.tex, and the list of pending sections
    python paper/build.py check    [--results DIR]   only the checks of paper/macros.py (no LaTeX needed)
    add --lenient to pdf/arxiv/check to report entries without a value as warnings (smoke/quick results)
    python paper/build.py runtimes [--out FILE]      build/paper/run_times.json from the committed store's records
                                                     (pdf, macros and check do this themselves for the paper's own results)

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


def refresh_run_times(results: Path) -> None:
    """For the paper's own results, write the run times from the store to the build folder, where the
    macros read them (``macros.run_times_file``); a build never writes into paper/results/."""
    if results.resolve() == M.RESULTS.resolve():
        write_run_times(M.RUN_TIMES, results)


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
    refresh_run_times(results)
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


def run_times(store: Path = ROOT / "paper" / "results" / "runs", chapters: Path = M.RESULTS) -> dict:
    """What the paper's runs cost, from the committed store's records alone: for the whole store the
    number of runs, the steps they trained and the sum of their own measured training times
    (``wall_time_s``; runs trained side by side each count their own time); the same per device type
    (``cpu`` or the GPU's name, as each record names it) with the steps trained per second of a run;
    per chapter the ``cost`` its results file reports (``<chapters>/<notebook>.json``: the runs it
    uses, or its own-best searches' where that is its only cost); and the GPU step-time benchmark
    (``paper/results/benchmarks/step_time_cuda*.json``: ms per step, lrdlib eager and the seed-style loop)."""
    recs = list(_records(Path(store)))
    by_device: dict[str, dict] = {}
    for r in recs:
        d = by_device.setdefault(_device_of(r), {"runs": 0, "steps": 0, "train_seconds": 0.0})
        d["runs"] += 1
        d["steps"] += int(r.get("steps_run") or 0)
        d["train_seconds"] += float(r.get("wall_time_s") or 0.0)
    for d in by_device.values():
        d["train_seconds"] = round(d["train_seconds"], 1)
        d["steps_per_second"] = d["steps"] / d["train_seconds"] if d["train_seconds"] else None
    gpus = sorted(k for k in by_device if k != "cpu")
    gpu = {"devices": gpus, "runs": sum(by_device[k]["runs"] for k in gpus),
           "steps": sum(by_device[k]["steps"] for k in gpus),
           "train_seconds": round(sum(by_device[k]["train_seconds"] for k in gpus), 1)}
    gpu["steps_per_second"] = gpu["steps"] / gpu["train_seconds"] if gpu["train_seconds"] else None
    gpu["step_time"] = _gpu_step_time(Path(store).parent / "benchmarks")
    return {"store": {"runs": len(recs), "steps": sum(d["steps"] for d in by_device.values()),
                      "train_seconds": round(sum(float(r.get("wall_time_s") or 0.0) for r in recs), 1)},
            "by_device": by_device, "gpu": gpu, "chapters": _chapter_costs(Path(chapters))}


def _records(store: Path):
    """The store's records (``lrdlib.runs.store.ResultStore``; the files read directly, gzipped JSON
    or plain, when that import fails)."""
    try:
        from lrdlib.runs.store import ResultStore
    except ImportError:
        ResultStore = None
    if ResultStore is not None:
        yield from ResultStore(store).records()
        return
    import gzip

    for f in sorted(store.glob("*/*.json*")):
        raw = f.read_bytes()
        yield json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)


def _device_of(record: dict) -> str:
    """``cpu`` or the GPU's name: the record's ``device``, else its config's (a record without either is a CPU run)."""
    dev = record.get("device") or record.get("config", {}).get("device") or "cpu"
    return "cpu" if str(dev).startswith("cpu") else str(dev)


def _gpu_step_time(benchmarks: Path) -> dict:
    """``{method: ms per step}`` of the eager rows of ``step_time_cuda*.json``."""
    bench = {}
    for p in sorted(benchmarks.glob("step_time_cuda*.json")):
        b = json.loads(p.read_text())
        for row in b["rows"]:
            if row["mode"] == "eager":
                bench[row["method"]] = {"lrdlib_ms": row["lrdlib_ms"], "reference_ms": row["reference_ms"],
                                        "ratio": row["ratio"], "device": b["device_name"], "torch": b["torch"]}
    return bench


def _chapter_costs(chapters: Path) -> dict:
    """``{notebook: cost}`` for each chapter results file that reports what its runs cost: its
    ``cost`` (runs, steps, train_seconds, by_device), or, where that is absent, its own-best
    searches' (``own_best.cost``, marked ``"part": "own_best"``)."""
    out = {}
    for p in sorted(chapters.glob("[0-9][0-9]_*.json")):
        data = json.loads(p.read_text(encoding="utf-8"))
        for part, cost in (("chapter", data.get("cost")), ("own_best", (data.get("own_best") or {}).get("cost"))):
            if isinstance(cost, dict) and "train_seconds" in cost:
                out[p.stem] = {k: cost[k] for k in ("runs", "steps", "train_seconds", "by_device") if k in cost}
                out[p.stem]["part"] = part
                break
    return out


def write_run_times(out: Path = M.RUN_TIMES, chapters: Path = M.RESULTS) -> dict:
    """``run_times()`` to ``out`` (JSON; by default in the git-ignored build folder), with a one-line summary."""
    times = run_times(chapters=chapters)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")
    st, g = times["store"], times["gpu"]
    print(f"wrote {M._display(out)}: {st['runs']} stored runs, {st['steps']:,} steps, "
          f"{st['train_seconds'] / 3600:.1f} h of training summed over runs; "
          f"{g['runs']} of them on a GPU ({', '.join(g['devices']) or 'none'})")
    return times


# ---------------------------------------------------------------- command line


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["pdf", "arxiv", "macros", "check", "runtimes"])
    ap.add_argument("--results", type=Path, default=M.RESULTS, help="folder of <notebook>.json chapter results")
    ap.add_argument("--out", type=Path, help=f"runtimes: output file (default {M._display(M.RUN_TIMES)})")
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
        refresh_run_times(results)
        t = make_macros(results)
        if t.errors:
            print("entries whose results file is present but has no value:\n  " + "\n  ".join(t.errors))
            sys.exit(1)
    elif a.command == "check":
        refresh_run_times(results)
        sys.exit(0 if run_checks(results, a.lenient) else 1)
    else:
        write_run_times(a.out or M.RUN_TIMES, results)


if __name__ == "__main__":
    main()
