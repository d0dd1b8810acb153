"""Which machine made a result, in words: the processor's model or the GPU's name.

A run's history is a deterministic function of its config on one kind of processor (same torch,
same thread count); on another model of CPU the linear-algebra kernels round differently and the
history parts from the stored one within a few hundred steps (``make verify`` measures it). So
every record names its ``processor``, the sittings log names the ``machine``, and ``make verify``
replays the runs made on this machine's processor.
"""
from __future__ import annotations

import os
from pathlib import Path


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The processor's model name from ``cpuinfo`` (Linux), or None where there is none."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name") and ":" in ln), None) or None


def processor(device: str = "cpu") -> str | None:
    """What computes on ``device``: the CUDA device's name, else the CPU's model name (None where
    the system does not give it)."""
    device = str(device)
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def machine(device: str = "cpu") -> str:
    """The machine a sitting ran on, in words: ``"cpu, 2 cores (AMD EPYC)"`` (machines of the same
    core count differ in speed) or ``"cuda, NVIDIA H100 80GB HBM3"``."""
    device = str(device)
    if device.startswith("cuda"):
        return f"{device}, {processor(device)}"
    name = cpu_name()
    return f"cpu, {os.cpu_count()} cores" + (f" ({name})" if name else "")
