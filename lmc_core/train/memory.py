"""What a training run needs in memory, and how many of its copies fit a device at once.

A copy needs its weights, gradients and optimizer buffers (fp32: 4 + 4 bytes per parameter, plus 8 for Adam's two
moments or 4 for SGD's momentum) and the activations its backward pass keeps. For a transformer those are about
34 h bytes per token and layer in 16-bit (Korthikanti et al. 2022, "Reducing activation recomputation in large
transformer models", Sec. 4.1, eq. 1, without the s^2 attention scores that a fused attention kernel does not keep),
so 68 h in fp32, plus the logits and their gradient (8 bytes per token and vocabulary entry). Measured on a CPU
(one training step of notebook 07's paper MinGPT, 30 M parameters, batch 32 x 256 tokens, vocabulary 50,257): 4.4 GB
per copy, estimated 5.0 GB. The estimate is meant to tell a run that fits from one that does not, not to the last
gigabyte: the budget leaves a fifth of a GPU free (two fifths of a CPU's available memory). A Fisher penalty's double backward triples the activations.

`RunStore.get` trains a run whose copies do not fit at once in packs of copies that do (copy k of an ensemble
trains exactly as it does alone, so the result is the same) and says so. On a GPU it refuses, before training, a
run of which one copy does not fit; on a CPU (which may swap, and where the estimate is rough) it warns and trains
one copy at a time. A run that keeps checkpoints is not packed (its checkpoints hold every copy): a warning.
"""
from __future__ import annotations

import os

import torch

from ..config import ConfigError, RunSpec

ENV = "LMC_MEMORY_GB"  # the memory budget, overriding the device's (tests; a machine shared with other jobs)
GB = 2**30


def parameters_per_copy(spec: RunSpec) -> int:
    """Parameters of one copy of the run's model (built on the meta device: no memory, no time)."""
    from ..families import family_of

    fam = family_of(spec.model)
    try:
        with torch.device("meta"):
            model = fam.build(spec.model, 1)
    except Exception:  # a model that cannot be built without memory (one that reads weights as it is built)
        model = fam.build(spec.model, 1)
    return sum(p.numel() for p in model.parameters())


def bytes_per_copy(spec: RunSpec, device: torch.device) -> dict[str, int]:
    """The estimated bytes one copy of `spec` holds while it trains: {"weights", "optimizer", "activations",
    "total"} (module docstring)."""
    cfg, tc = spec.model, spec.train
    n = parameters_per_copy(spec)
    opt = {"adam": 8, "adamw": 8}.get(tc.optimizer, 4 if getattr(tc, "momentum", 0) else 0)
    context = getattr(cfg, "context", 0) or getattr(spec.data, "max_length", 0) or 1
    tokens = tc.batch_size // max(tc.accum, 1) * context
    width, layers = getattr(cfg, "d_model", 0), getattr(cfg, "n_layers", 0)
    vocab = getattr(cfg, "vocab_size", 0)
    logits = tokens * vocab * 4 * 2
    acts = tokens * layers * width * 68 + logits
    if any(v > 0 for v in spec.copy_values("fisher")):
        acts *= 3  # the Fisher penalty's double backward keeps the first backward's graph as well
    out = {"parameters": n, "weights": 8 * n, "optimizer": opt * n, "activations": acts}
    out["total"] = out["weights"] + out["optimizer"] + acts
    return out


def device_budget(device: torch.device) -> int | None:
    """Bytes a run may use on `device`: LMC_MEMORY_GB if set, else four fifths of a GPU's memory or three fifths of
    the memory the operating system reports available; None where neither is known (no packing then)."""
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            return int(float(env) * GB)
        except ValueError:
            raise ValueError(f"{ENV}={env!r} must be a number of gigabytes") from None
    if device.type == "cuda":
        return int(0.8 * torch.cuda.get_device_properties(device).total_memory)
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    return int(0.6 * avail)  # the study's process keeps its evaluation and earlier runs beside the training


def copies_at_once(spec: RunSpec, device: torch.device, what: str = "run") -> int:
    """How many of the run's copies train together on `device` (all of them when they fit). Raises ConfigError,
    before any training, when one copy does not fit a GPU; warns for a CPU, and for a run that keeps checkpoints
    (not packed)."""
    need = bytes_per_copy(spec, device)
    budget = device_budget(device)
    if budget is None or need["total"] * spec.k <= budget:
        return spec.k
    words = (f"{what}: one copy needs about {need['total'] / GB:.1f} GB ({need['parameters']:,} parameters: "
             f"{(need['weights'] + need['optimizer']) / GB:.1f} GB of weights, gradients and optimizer buffers; "
             f"activations of batch {spec.train.batch_size} / accum {spec.train.accum}: "
             f"{need['activations'] / GB:.1f} GB), {spec.k} copies {spec.k * need['total'] / GB:.1f} GB; the "
             f"budget on {device.type} is {budget / GB:.1f} GB")
    if need["total"] > budget and device.type == "cuda":
        raise ConfigError(f"{words}: even one copy does not fit. Use a larger device, or raise the run's "
                          f"accum (micro-batches) to shrink the activations")
    if spec.train.checkpoints or need["total"] > budget:  # a CPU may swap, and the estimate is rough: say so, go on
        why = ("a run that keeps checkpoints trains all its copies at once" if spec.train.checkpoints else
               "even one copy may not fit")
        print(f"warning: {words}; {why}: it may run out of memory (a larger machine, or fewer copies per run, "
              "avoids it)", flush=True)
        return spec.k if spec.train.checkpoints else 1
    return max(1, int(budget // need["total"]))
