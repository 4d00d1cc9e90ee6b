"""The machine that computes: what a run store and a summary record of it.

float32 kernels differ between CPUs (torch's AVX2 and AVX512 kernels sum in different orders) and between CPU and
GPU, so the same seeds and data give weights that differ in their last bits from the first step, and SGD amplifies
that like new noise: a verdict near its threshold can flip on another machine (the README's kept build). So every
stored run records the machine that trained it (``DONE.json``'s ``machine``), every summary the machines that
trained the runs it read (:data:`TRAINED_ON`, collected as runs are stored and read) and the one that wrote it.
"""
from __future__ import annotations

import platform

TRAINED_ON: list[dict] = []  # the machines of the runs stored or read in this process since the last reset


def machine() -> dict:
    """This machine: the CPU's model name, the instruction set torch's CPU kernels use
    (`torch.backends.cpu.get_cpu_capability()`: AVX2, AVX512 ...), torch's threads and version, and the GPU's name
    when one is available."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "torch": torch.__version__}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def words(m: dict) -> str:
    """A `machine()` record in words: 'Intel(R) Xeon(R) Processor (AVX512), 1 torch thread(s), torch 2.13.0+cpu'
    ('' for an empty record: a summary or run stored before machines were recorded)."""
    if not m:
        return ""
    gpu = f"{m['gpu']}; " if m.get("gpu") else ""
    return f"{gpu}{m['cpu']} ({m['cpu_capability']}), {m['threads']} torch thread(s), torch {m['torch']}"


def note(m: dict | None) -> None:
    """Record that a run trained on machine `m` was stored or read ({} or None: a run that does not say)."""
    TRAINED_ON.append(dict(m or {}))


def trained_on() -> list[str]:
    """The machines of the runs noted since the last reset, in words, each once, in the order first seen ('not
    recorded' for runs stored before machines were)."""
    out = []
    for m in TRAINED_ON:
        w = words(m) or "not recorded"
        if w not in out:
            out.append(w)
    return out
