"""Which machine made a result, in words: the processor's model or the GPU's name.

A run's history is a deterministic function of its config on one kind of processor (same torch,
same thread count); on another model of CPU the linear-algebra kernels round differently and the
history parts from the stored one within a few hundred steps (``make verify`` measures it). So
every record names its ``processor``, and ``make verify``
replays the runs made on this machine's processor.
"""
from __future__ import annotations

from pathlib import Path


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The processor's model name from ``cpuinfo`` (Linux), or None where there is none."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name") and ":" in ln), None) or None


def _cpuinfo_field(lines: list[str], field: str) -> str | None:
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.split(":", 1)[0].strip() == field and ":" in ln), None) or None


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo"), capability: str | None = None) -> str | None:
    """The CPU as far as rounding goes: its model name, family and model numbers, and the vector
    instruction set torch's kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``), e.g.
    ``"AMD EPYC (family 26 model 2, AVX512)"``. A virtual machine may name every EPYC "AMD EPYC":
    two such machines of different generations (one AVX2, one AVX-512) round differently, which the
    bare name hides (seen here: records made on one did not replay bit for bit on the other)."""
    name = cpu_name(cpuinfo)
    if name is None:
        return None
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    fam, mod = _cpuinfo_field(lines, "cpu family"), _cpuinfo_field(lines, "model")
    if capability is None:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    parts = ([f"family {fam} model {mod}"] if fam and mod else []) + ([capability] if capability else [])
    return f"{name} ({', '.join(parts)})" if parts else name


def processor(device: str = "cpu") -> str | None:
    """What computes on ``device``: the CUDA device's name, else the CPU's ``cpu_identity`` (None
    where the system does not name it). Older records name the CPU's model name only."""
    device = str(device)
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return cpu_identity()
