"""What does Newton-Schulz save over an SVD? Wall time of

    ns_cubic5     lrdlib.core.newton_schulz.newton_schulz(W, 5, "cubic")    (the seed's LRD direction)
    ns_quintic5   lrdlib.core.newton_schulz.newton_schulz(W, 5, "quintic")  (Muon's)
    svd           torch.linalg.svd(W, full_matrices=False)             (exact U Vᵀ needs it)
    svdvals       torch.linalg.svdvals(W)                              (singular values only)

on square float32 matrices n × n, n from 64 to 4096, one matrix and a batch of ``--batch``
(batched only up to ``--max-batched``). Median over ``--repeats`` timed calls after one
warm-up; sizes above 1024 use at most 3 timed calls, and 4096 no warm-up (every method is
first called once on a small matrix), so the whole default run takes a few minutes on a
2-core CPU.

    python benchmarks/ns_vs_svd.py [--sizes 64,128,...] [--batch 4] [--device cpu] [--repeats 5] [--threads N]

On a CPU shared with other jobs, torch's default of one intra-op thread per core can make
small matrix products ten times slower (threads wait on each other); ``--threads 1`` gives
numbers that are stable under load. The thread count is part of the device name printed and
stored.

Writes build/benchmarks/ns_vs_svd.json (read by notebook 02); on a GPU, pass
``--out build/benchmarks/ns_vs_svd_cuda.json`` to keep both.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lrdlib.core.machine import processor
from lrdlib.core.newton_schulz import newton_schulz

DEFAULT_SIZES = (64, 128, 256, 512, 1024, 2048, 4096)
METHODS = {
    "ns_cubic5": lambda W: newton_schulz(W, 5, "cubic"),
    "ns_quintic5": lambda W: newton_schulz(W, 5, "quintic"),
    "svd": lambda W: torch.linalg.svd(W, full_matrices=False),
    "svdvals": torch.linalg.svdvals,
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return processor(device)
    return f"{processor(device) or 'cpu'} ({torch.get_num_threads()} threads)"


def time_call(fn, W: torch.Tensor, repeats: int, warmup: bool, device: str) -> float:
    """Median wall time of fn(W) in milliseconds."""
    if warmup:
        fn(W)
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(W)
        _sync(device)
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def repeats_for(n: int, repeats: int) -> tuple[int, bool]:
    """(timed calls, warm-up?) for size n: at most 3 calls above 1024, no warm-up above 2048."""
    if n <= 1024:
        return repeats, True
    return min(3, repeats), n <= 2048


def run(sizes, batch: int, device: str, repeats: int, max_batched: int, methods=None, seed: int = 0) -> list[dict]:
    methods = list(methods or METHODS)
    gen = torch.Generator().manual_seed(seed)
    small = torch.randn(2, 64, 64, generator=gen).to(device)
    for m in methods:  # load kernels / libraries once
        METHODS[m](small)
        METHODS[m](small[0])
    rows = []
    for n in sizes:
        for b in ([1, batch] if batch > 1 and n <= max_batched else [1]):
            W = torch.randn(*(() if b == 1 else (b,)), n, n, generator=gen).to(device)
            reps, warm = repeats_for(n, repeats)
            row = {"n": n, "batch": b, "repeats": reps}
            for m in methods:
                row[f"{m}_ms"] = time_call(METHODS[m], W, reps, warm, device)
            if "svd_ms" in row:
                for m in ("ns_cubic5", "ns_quintic5"):
                    if f"{m}_ms" in row:
                        row[f"svd/{m}"] = row["svd_ms"] / row[f"{m}_ms"]
            rows.append(row)
            print(_fmt(row, methods), flush=True)
    return rows


def _fmt(row: dict, methods) -> str:
    cells = [f"{row['n']:5d}", f"{row['batch']:3d}"] + [f"{row[f'{m}_ms']:11.2f}" for m in methods]
    cells += [f"{row[k]:8.2f}" for k in ("svd/ns_cubic5", "svd/ns_quintic5") if k in row]
    return "  ".join(cells)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated n (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=4, help="batch size of the batched runs (seed: 4 Q/K matrices)")
    ap.add_argument("--max-batched", type=int, default=1024, help="largest n timed batched")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--out", default="build/benchmarks/ns_vs_svd.json", help="JSON output ('' = do not write)")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1:
        ap.error(f"--sizes {a.sizes!r}: give positive integers, e.g. 64,128,256")
    if a.batch < 1 or a.repeats < 1 or (a.threads is not None and a.threads < 1):
        ap.error("--batch, --repeats and --threads must be positive")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: CUDA is not available on this machine")
    old_threads = torch.get_num_threads()
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    name = device_name(a.device)
    print(f"device: {a.device} ({name}), torch {torch.__version__}, float32")
    methods = list(METHODS)
    print("    n  bat  " + "  ".join(f"{m + ' ms':>11s}" for m in methods) + "  svd/cub5  svd/qui5")
    try:
        rows = run(sizes, a.batch, a.device, a.repeats, a.max_batched, methods)
    finally:
        torch.set_num_threads(old_threads)
    res = dict(device=a.device, device_name=name, torch=torch.__version__, dtype="float32",
               threads=a.threads or old_threads, batch=a.batch, repeats=a.repeats, rows=rows)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
