"""Long profiles in chunks: a deadline that training respects, and a ledger of what is left.

``make paper-runs HOURS=2`` executes the notebooks at ``PROFILE=paper`` with ``$LRD_DEADLINE``
(seconds since the epoch) and ``$LRD_LEDGER`` (a JSON-lines file) set. Then:

* ``run_sweep`` trains its missing runs fastest-first (fewest steps first) and starts a run only
  if its estimated time (``estimate_seconds``) ends before the deadline; ``train`` starts one only
  before the deadline. Runs already going finish and are saved; nothing finished is lost.
* When runs are left, the sweep appends ``{"notebook", "missing", "seconds"}`` to the ledger and
  raises ``DeadlineReached``; the notebook stops there, the next sitting resumes from the store.

* A run that can be suspended (``lrdlib.suspend``: most runs) starts whenever at least
  ``MIN_SEGMENT_S`` are left, trains until the deadline, saves its state and is resumed, with the
  same history, by the next sitting on this machine; suspended runs go first. So no worker idles
  at the end of a sitting waiting for a whole run to fit.
* Every run stored during the sitting is noted in the ledger too (``note_saved``: its key, steps
  and time), so a sitting counts its own records even beside another sitting, and its estimates
  use the speed measured in the sitting itself (``sitting_rate``) once a run has finished.

Without ``$LRD_DEADLINE`` none of this applies. ``$LRD_S_PER_STEP`` replaces the measured seconds
per step in the estimates (a GPU sitting: ``benchmarks/gpu_sitting.sh``).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .config import RunConfig
from .machine import machine

# Seconds per training step of one run in a process-pool worker on the 2-core reference machine
# (one thread per worker; measured 2026-11: 45-50 ms with evaluations every 100 steps). Used only
# when the store holds no runs made on this machine's processor to estimate from (``measured_here``).
DEFAULT_S_PER_STEP = 0.05


class DeadlineReached(RuntimeError):
    """The chunk's time is up with runs still missing (they are in the ledger)."""


def deadline() -> float | None:
    """``$LRD_DEADLINE`` as seconds since the epoch, or None."""
    v = os.environ.get("LRD_DEADLINE")
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"$LRD_DEADLINE={v!r}: expected seconds since the epoch, e.g. {time.time() + 7200:.0f}") from None


# Runs shorter than this (most of their time start-up and evaluation) do not set a sitting's rate.
MIN_RATE_STEPS = 1000


def seconds_per_step(records: Sequence[dict] | None = None, fallback: float | None = None) -> float:
    """Seconds per training step of one run in a worker, for the estimates: ``$LRD_S_PER_STEP`` if
    set (another machine: a GPU sitting sets its own); else, in a sitting, the rate measured in it
    (``sitting_rate``); else ``fallback`` if given; else, with no ``records`` given, the rate the
    last sitting on this machine measured (``logged_rate``); else the median measured seconds per
    step of ``records`` (finished ones; default ``measured_here()``: the stored runs made on this
    machine's processor); else the default."""
    env = os.environ.get("LRD_S_PER_STEP")
    if env:
        try:
            v = float(env)
        except ValueError:
            v = float("nan")
        if not v > 0:
            raise ValueError(f"$LRD_S_PER_STEP={env!r}: expected a positive number of seconds, e.g. 0.005")
        return v
    if records is None and (rate := sitting_rate()) is not None:
        return rate
    if fallback is not None:
        return fallback
    if records is None and (rate := logged_rate()) is not None:
        return rate
    if records is None:
        records = measured_here()
    vals = sorted(r["wall_time_s"] / r["steps_run"] for r in records
                  if r.get("status") != "failed" and r.get("steps_run") and r.get("wall_time_s"))
    return vals[len(vals) // 2] if vals else DEFAULT_S_PER_STEP


def logged_rate(path: str | Path | None = None) -> float | None:
    """The seconds per step measured by the last sitting on this machine (``machine("cpu")``) that
    logged one in the sittings log (default: the results store's ``sittings.jsonl``), or None."""
    if path is None:
        from .store import ResultStore

        try:
            path = ResultStore().root.parent / "sittings.jsonl"
        except ValueError:
            return None
    here = machine("cpu")
    rates = [e["s_per_step"] for e in ledger_entries(path) if e.get("machine") == here and e.get("s_per_step")]
    return float(rates[-1]) if rates else None


def ledger_entries(path: str | Path | None = None) -> list[dict]:
    """The entries of a JSON-lines log: a sitting's ledger (default ``$LRD_LEDGER``; none outside
    a sitting) or the sittings log."""
    path = path or os.environ.get("LRD_LEDGER")
    if not path or not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue   # a line cut short by a kill
    return out


def note_saved(record: dict) -> None:
    """In a sitting (``$LRD_LEDGER`` set), note a run just stored: its key, notebook, steps run and
    wall time. Written by the process that trained it, in one short append."""
    ledger = os.environ.get("LRD_LEDGER")
    if not ledger:
        return
    entry = {"notebook": os.environ.get("LRD_NOTEBOOK", ""), "saved": record.get("key"),
             "steps_run": record.get("steps_run"), "wall_time_s": record.get("wall_time_s"), "time": time.time()}
    Path(ledger).parent.mkdir(parents=True, exist_ok=True)
    with open(ledger, "a") as f:
        f.write(json.dumps(entry) + "\n")


def sitting_rate(entries: Sequence[dict] | None = None, notebook: str | None = None) -> float | None:
    """The seconds per step measured in this sitting: the upper quartile, over the runs it stored
    with at least ``MIN_RATE_STEPS`` steps (of ``notebook``, if given), of wall time / steps; None
    before the first. An upper quartile, not a median: the estimate decides whether a run may
    start before the deadline, and an overrun loses the run."""
    entries = ledger_entries() if entries is None else entries
    vals = sorted(e["wall_time_s"] / e["steps_run"] for e in entries
                  if e.get("saved") and (notebook is None or e.get("notebook") == notebook)
                  and (e.get("steps_run") or 0) >= MIN_RATE_STEPS and e.get("wall_time_s"))
    return vals[(3 * len(vals)) // 4] if vals else None


def measured_here() -> list[dict]:
    """The results store's CPU runs made on this machine's processor (``record["processor"]``):
    their measured times say how fast this machine trains (processors of one core count differ
    twofold). Empty when there are none, or no store (outside a checkout)."""
    from .machine import processor
    from .store import ResultStore

    here = processor("cpu")
    if here is None:
        return []
    try:
        store = ResultStore()
    except ValueError:
        return []
    return [r for r in store.records() if r.get("processor") == here and r.get("device") == "cpu"]


def records_cost(records) -> dict:
    """What a set of run records cost to train, from the records themselves (so a chapter's results
    are the same whether its runs were trained now or read back from the store): ``runs``,
    ``steps`` (steps trained, summed), ``train_seconds`` (the runs' own wall-clock times, summed;
    each run timed in its worker, so on a pool of k workers the sitting took about a k-th of it)
    and ``devices`` (with ``by_device``: runs per device). Failed records (no history) count as runs
    with no steps."""
    from collections import Counter

    recs = list(records)
    by = Counter(str(r["device"]) for r in recs if r.get("device"))
    return {"runs": len(recs), "steps": int(sum(r.get("steps_run") or 0 for r in recs)),
            "train_seconds": round(float(sum(r.get("wall_time_s") or 0.0 for r in recs)), 1),
            "devices": sorted(by), "by_device": dict(sorted(by.items()))}


def devices_phrase(cost: dict) -> str:
    """Where a chapter's runs were made, in words, from ``records_cost``: "all 40 on cpu" or
    "13 on cpu, 19 on NVIDIA H100 80GB HBM3"."""
    by = cost.get("by_device") or {}
    if len(by) == 1:
        (d, n), = by.items()
        return f"all {n} on {d}"
    return ", ".join(f"{n} on {d}" for d, n in by.items()) or "none trained"


def estimate_seconds(cfg: RunConfig, s_per_step: float = DEFAULT_S_PER_STEP) -> float:
    """An upper estimate of one run's time: every step of its budget (an early stop only shortens it)."""
    return cfg.steps * s_per_step


def fastest_first(configs: Sequence[RunConfig], order: Sequence[int], started: set[str] = frozenset()) -> list[int]:
    """``order`` (indices into ``configs``) with the runs already ``started`` (keys of suspended
    runs, ``lrdlib.suspend.started``) first, then sorted by budget, then by larger training fraction
    (with early stopping, runs that see more data grok, and stop, sooner); stable otherwise."""
    return sorted(order, key=lambda i: (configs[i].key() not in started, configs[i].steps, -configs[i].task.train_frac))


def fits(cfg: RunConfig, s_per_step: float, now: float | None = None) -> bool:
    """Whether ``cfg``'s whole budget fits before the deadline (or there is none)."""
    end = deadline()
    return end is None or (now or time.time()) + estimate_seconds(cfg, s_per_step) <= end


# The least time before the deadline worth starting a resumable run for (its start-up, a first
# interval and the save take seconds; a shorter segment would mostly be overhead).
MIN_SEGMENT_S = 300.0


def may_start(cfg: RunConfig, s_per_step: float, now: float | None = None, resumable: bool | None = None) -> bool:
    """Whether ``cfg`` may start now: its whole budget fits, or it can be suspended at the deadline
    (``resumable``; default ``lrdlib.suspend.resumable(cfg)``) and ``MIN_SEGMENT_S`` are left."""
    if fits(cfg, s_per_step, now):
        return True
    if resumable is None:
        from .suspend import resumable as can

        resumable = can(cfg)
    return resumable and (now or time.time()) + MIN_SEGMENT_S <= deadline()


def budget_share(records: Sequence[dict | None]) -> float | None:
    """The median share of its budget that a finished run of ``records`` trained (``steps_run`` /
    ``config.steps``; early stops make it less than 1); None with no finished run."""
    vals = sorted(r["steps_run"] / r["config"]["steps"] for r in records
                  if r and r.get("status") in ("ok", "diverged") and r.get("steps_run") and r["config"].get("steps"))
    return vals[len(vals) // 2] if vals else None


def note_missing(configs: Sequence[RunConfig], s_per_step: float, share: float | None = None) -> str:
    """Append the runs left to ``$LRD_LEDGER`` (if set); return a one-line summary. ``share``: the
    median share of their budget that the sweep's finished runs trained (``budget_share``), for a
    typical estimate beside the upper one (every run at its whole budget)."""
    secs = sum(estimate_seconds(c, s_per_step) for c in configs)
    entry = {"notebook": os.environ.get("LRD_NOTEBOOK", ""), "missing": len(configs), "seconds": secs,
             "steps": sum(c.steps for c in configs), "time": time.time()}
    if share is not None:
        entry["share"] = round(share, 3)
    ledger = os.environ.get("LRD_LEDGER")
    if ledger:
        Path(ledger).parent.mkdir(parents=True, exist_ok=True)
        with open(ledger, "a") as f:
            f.write(json.dumps(entry) + "\n")
    return (f"deadline reached: {len(configs)} runs of this sweep are still missing "
            f"(at most {secs / 3600:.1f} h at {1000 * s_per_step:.0f} ms per step); the next sitting resumes them")


def note_design_left(runs: int, steps: int) -> None:
    """Append to ``$LRD_LEDGER`` (if set) an upper bound on what the notebook's whole design has
    still to run, ``runs`` and ``steps`` (an adaptive search: ``lrdlib.search.Search.left_at_most``
    summed), noted before each sweep; the sitting's summary prints the last one per notebook beside
    the runs left in the sweep it stopped at (a lower bound). Runs of the store count as left until
    the sweep that asks for them has read them back."""
    ledger = os.environ.get("LRD_LEDGER")
    if ledger:
        entry = {"notebook": os.environ.get("LRD_NOTEBOOK", ""), "design_left": int(runs),
                 "design_steps": int(steps), "time": time.time()}
        Path(ledger).parent.mkdir(parents=True, exist_ok=True)
        with open(ledger, "a") as f:
            f.write(json.dumps(entry) + "\n")


def design_lines(entries: Sequence[dict], notebooks: Sequence[str] | None = None) -> list[str]:
    """The sitting summary's lines for the design bounds of ``entries`` (a ledger): per notebook (of
    ``notebooks``, default all) the last ``design_left`` entry, with hours at the ms per step of its
    last ``missing`` entry, if any."""
    design, rate = {}, {}
    for e in entries:
        if "design_left" in e and (notebooks is None or e["notebook"] in notebooks):
            design[e["notebook"]] = e
        if e.get("missing") and e.get("steps") and e.get("seconds") is not None:
            rate[e["notebook"]] = e["seconds"] / e["steps"]
    out = []
    for nb, e in design.items():
        hours = (f", at most {e['design_steps'] * rate[nb] / 3600:.1f} h at {1000 * rate[nb]:.0f} ms per step"
                 if nb in rate else "")
        out.append(f"  {nb}: at most {e['design_left']} runs left in its whole design "
                   f"({e['design_steps']} steps{hours}; every search stage still open counted at its largest)")
    return out


# ---------------------------------------------------------------- the sittings log: what the paper profile cost
def log_sitting(path: Path, entry: dict) -> None:
    """Append one notebook's part of a sitting to the JSON-lines log ``path`` (committed with the store)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def sitting_totals(entries: Sequence[dict]) -> dict:
    """Per notebook, from the sittings log: ``seconds`` (the wall-clock time of every logged sitting,
    times its ``machine_share`` when it used part of the machine (side by side with other notebooks,
    or one worker beside another sitting: ``cpu_share``), summed: the machine's
    time it took), ``seconds_timed`` (the same over the sittings whose time is known), ``sittings``,
    ``new_records``, ``complete`` (its last sitting finished it), ``machines``.
    A notebook's total is only as complete as its log: an entry with ``seconds`` null (a sitting
    whose time was not measured) makes ``seconds`` null."""
    out: dict[str, dict] = {}
    for e in entries:
        t = out.setdefault(e["notebook"], {"seconds": 0.0, "seconds_timed": 0.0, "sittings": 0, "new_records": 0,
                                           "complete": False, "machines": []})
        t["sittings"] += 1
        secs = None if e.get("seconds") is None else e["seconds"] * e.get("machine_share", 1.0)
        t["seconds"] = None if t["seconds"] is None or secs is None else t["seconds"] + secs
        t["seconds_timed"] += secs or 0.0
        t["new_records"] += e.get("new_records") or 0
        t["complete"] = e.get("status") == "complete"
        if e.get("machine") and e["machine"] not in t["machines"]:
            t["machines"].append(e["machine"])
    return out


# ---------------------------------------------------------------- the runner: make paper-runs HOURS=2
def _notebooks(root: Path, selected: Sequence[str]) -> list[Path]:
    nbs = sorted(root.glob("notebooks/[0-9][0-9]_*.ipynb"))
    if selected:
        nbs = [p for p in nbs if any(p.name.startswith(s) or p.name == s for s in selected)]
    if not nbs:
        raise ValueError(f"no notebook matches {list(selected)}; valid: "
                         f"{', '.join(p.stem for p in sorted(root.glob('notebooks/[0-9][0-9]_*.ipynb')))}")
    return nbs


def execute_plain(nb: Path, params: dict, cwd: Path | None = None) -> None:
    """Execute a notebook's code cells in order, in one namespace of this process, without Jupyter:
    the values of ``params`` are assigned after the cell tagged ``parameters`` (as papermill
    injects them). For machines with PyTorch but no Jupyter kernel (a lent GPU,
    ``benchmarks/gpu_sitting.sh``). Nothing is displayed or saved but what the cells write
    (figures, results, records); an exception in a cell propagates, naming the cell."""
    nb = Path(nb)
    try:
        cells = json.loads(nb.read_text())["cells"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{str(nb)!r} is not a readable notebook ({e})") from None
    if cwd is not None:
        os.chdir(cwd)
    ns: dict = {"__name__": "__main__"}
    n_code = 0
    for i, c in enumerate(cells):
        if c.get("cell_type") != "code":
            continue
        n_code += 1
        src = "".join(c["source"])
        if "parameters" in c.get("metadata", {}).get("tags", []):
            src += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
        try:
            exec(compile(src, f"<{nb.name}: cell {i}>", "exec"), ns)
        except BaseException as e:
            if hasattr(e, "add_note"):
                e.add_note(f"in {nb.name}, cell {i} (code cell {n_code})")
            raise


def cpu_share(device: str, workers: int, threads: int, cores: int | None = None) -> float:
    """The share of the machine a sitting uses: on a CPU, workers × torch threads over the cores
    (at most 1; ``LRD_WORKERS=1 LRD_THREADS=1`` beside another sitting is half of two cores), so
    that the run times (``sitting_totals``) count a sitting made beside another at its share. A
    GPU sitting counts whole (its card is the machine)."""
    cores = cores or os.cpu_count() or 1
    if not device.startswith("cpu"):
        return 1.0
    return round(min(1.0, workers * threads / cores), 3)


def run_chunk(hours: float, notebooks: Sequence[str] = (), device: str = "cpu", kernel: str = "lrd-companion",
              plain: bool = False, side_by_side: bool = False) -> int:
    """Execute the notebooks at ``PROFILE=paper`` until ``hours`` have passed; print what is left.

    Each notebook trains its missing runs (into the results store) and, when none is left,
    regenerates its figures and results. A notebook stopped by the deadline is reported with the
    runs left in the sweep it stopped at (a lower bound: later stages of a search are only known
    once the earlier ones have finished). Returns 0 when every notebook completed.

    side_by_side: execute the notebooks at the same time, each with an equal share of the workers
    (``$LRD_WORKERS``, default one per core, divided among them, at least one each), one torch
    thread per worker and as many threads as it has workers in the notebook's own process
    (``$OMP_NUM_THREADS``: notebook 08 trains in-process when it has one worker); otherwise one
    after another, each with every worker. Side by side, no core idles while one notebook's search
    stage waits on its last run: the other notebook's worker goes on. Each notebook's line in the
    sittings log counts its own records (the ledger names them)."""
    import subprocess
    import sys

    from .paths import repo_root
    from .store import ResultStore

    if not hours > 0:
        raise ValueError(f"hours={hours!r}: expected a positive number of hours, e.g. 2")
    root = repo_root()
    if root is None:
        raise ValueError("run from inside a checkout of the repository")
    nbs = _notebooks(root, notebooks)
    start = time.time()
    ledger = root / "build" / "paper-runs" / f"ledger-{int(start)}.jsonl"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LRD_DEADLINE": f"{start + 3600 * hours:.0f}", "LRD_LEDGER": str(ledger), "TQDM_DISABLE": "1"}
    from .sweep import pool_size, worker_threads

    beside = side_by_side and len(nbs) > 1
    if beside:
        total = pool_size(device)
        each = max(1, total // len(nbs))
        # and its own process (a notebook that trains in-process when it has one worker) as many threads
        env.update(LRD_WORKERS=str(each), LRD_THREADS="1", OMP_NUM_THREADS=str(each))
        share = round(each / max(total, each * len(nbs)), 3)   # of the machine, per notebook
    else:   # e.g. LRD_WORKERS=1 LRD_THREADS=1 beside another sitting: half of a 2-core machine
        share = cpu_share(device, pool_size(device), worker_threads(pool_size(device)))
    store = ResultStore()
    n0 = len(store.files())
    sittings = store.root.parent / "sittings.jsonl"

    def launch(nb: Path) -> subprocess.Popen:
        out = root / "build" / "notebooks" / nb.name
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = ([sys.executable, "-m", "lrdlib.chunks", "--execute", str(nb), "--device", device] if plain else
               [sys.executable, "-m", "papermill", str(nb), str(out), "-k", kernel, "--cwd", "notebooks",
                "-p", "profile", "paper", "-p", "device", device, "--log-level", "WARNING"])
        with open(log(nb), "w") as f:   # a file, not a pipe: side by side, no process waits on a full pipe
            return subprocess.Popen(cmd, cwd=root, stdout=f, stderr=subprocess.STDOUT,
                                    env={**env, "LRD_NOTEBOOK": nb.stem, **({"MPLBACKEND": "Agg"} if plain else {})})

    def log(nb: Path) -> Path:
        return ledger.with_name(f"{ledger.stem}-{nb.stem}.log")

    def finish(nb: Path, proc: subprocess.Popen, t0: float) -> str:
        proc.wait()
        tail = log(nb).read_text(errors="replace")[-3000:]
        status = ("complete" if proc.returncode == 0 else
                  "deadline" if "DeadlineReached" in tail or "Suspended" in tail else "error")
        mine = [e for e in ledger_entries(ledger) if e.get("saved") and e.get("notebook") == nb.stem]
        rate = sitting_rate(mine)
        print(f"{nb.stem}: {status} after {time.time() - t0:.0f} s, {len(mine)} new records"
              + (f", {1000 * rate:.0f} ms per step per worker (upper quartile)" if rate else ""), flush=True)
        log_sitting(sittings, {"notebook": nb.stem, "status": status, "seconds": round(time.time() - t0, 1),
                               "new_records": len(mine), "s_per_step": round(rate, 4) if rate else None,
                               "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
                               "machine": machine(device), "load_avg_end": round(os.getloadavg()[0], 2),
                               **({"machine_share": share} if share < 1 else {}),
                               **({"side_by_side": [n.stem for n in nbs]} if beside else {})})
        if status == "error":
            print("    " + tail[-1500:].replace("\n", "\n    "), flush=True)
        return status

    status = {}
    if side_by_side:
        t0 = time.time()
        pending = [(nb, launch(nb)) for nb in nbs]
        while pending:   # each notebook logged as it ends, with its own time
            for nb, proc in [x for x in pending if x[1].poll() is not None]:
                status[nb.stem] = finish(nb, proc, t0)
                pending.remove((nb, proc))
            time.sleep(1)
    else:
        for nb in nbs:
            t0 = time.time()
            status[nb.stem] = finish(nb, launch(nb), t0)
    left = [e for e in ledger_entries(ledger) if "missing" in e]
    n1 = len(store.files())
    print(f"\nthis sitting: {time.time() - start:.0f} s, {n1 - n0} new records in {store.root} "
          f"({n1} in all, {store.size_bytes() / 1e6:.1f} MB)")
    for e in left:
        typical = (f"; about {e['share'] * e['seconds'] / 3600:.1f} h if they train the median share of their budget, "
                   f"{e['share']:.2f}, that the sweep's finished runs trained" if e.get("share") is not None else "")
        print(f"  {e['notebook']}: at least {e['missing']} runs left in the sweep it stopped at "
              f"({e['steps']} steps, at most {e['seconds'] / 3600:.1f} h{typical})")
    if left:
        print(f"  at least {sum(e['seconds'] for e in left) / 3600:.1f} h left (upper estimate for the sweeps "
              "listed; later stages of a search appear once those finish)")
    for line in design_lines(ledger_entries(ledger), [k for k, v in status.items() if v != "complete"]):
        print(line)
    return 0 if all(v == "complete" for v in status.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Train the missing runs of the paper profile for HOURS, then stop cleanly.")
    ap.add_argument("--hours", type=float, help="the sitting's length")
    ap.add_argument("--notebooks", nargs="*", default=[], help="numbers or names, e.g. 03 04 (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--side-by-side", action="store_true",
                    help="execute the notebooks at the same time, the workers shared among them (make paper-runs SIDE=1)")
    ap.add_argument("--plain", action="store_true",
                    help="execute the notebooks without Jupyter (execute_plain), e.g. on a GPU machine without papermill")
    ap.add_argument("--execute", metavar="NOTEBOOK", help="(internal) execute one notebook plainly at PROFILE=paper, "
                    "in its folder, and exit")
    a = ap.parse_args(argv)
    if a.execute:
        nb = Path(a.execute).resolve()
        execute_plain(nb, {"profile": "paper", "device": a.device}, cwd=nb.parent)
        return 0
    if a.hours is None:
        ap.error("--hours is required")
    return run_chunk(a.hours, a.notebooks, a.device, plain=a.plain, side_by_side=a.side_by_side)


if __name__ == "__main__":
    raise SystemExit(main())
