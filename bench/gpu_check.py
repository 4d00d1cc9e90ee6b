"""GPU check: every study's smoke profile on CUDA, and the K-copy trainer's equivalences on the device.

Run on a machine with a GPU (`python bench/gpu_check.py`); prints one line per check and exits 1 if
any failed. Studies whose data or model packages are missing there are reported as skipped.
"""
from __future__ import annotations

import importlib
import sys
import tempfile
import time
import traceback

import torch

from lmc_core.config import RunSpec, Seeds, TrainConfig, model_preset
from lmc_core.train import train_copies

STUDIES = ("instability_init", "instability_spawn", "finetuning", "alignment", "generalization", "grokking",
           "model_sizes")


def check(name, fn):
    t = time.perf_counter()
    try:
        fn()
        print(f"PASS {name} ({time.perf_counter() - t:.1f} s)", flush=True)
        return True
    except ModuleNotFoundError as e:
        print(f"SKIP {name}: {e}", flush=True)
        return True
    except Exception:  # noqa: BLE001
        print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
        return False


def copies_match(**train):
    """Copy k of a CUDA ensemble equals a lone CUDA run with the same seeds (dropout from the device hash)."""
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(0, 60, (20000,), generator=g)
    cfg = model_preset("ptb-transformer", vocab_size=60, d_model=32, d_ff=32, context=16)
    seeds = [Seeds(0, 1, 2), Seeds(0, 3, 4), Seeds(5, 6, 7)]
    spec = lambda s: RunSpec(model=cfg, train=TrainConfig(steps=20, batch_size=8, **train), seeds=tuple(s))  # noqa: E731
    ens = train_copies(spec(seeds), stream, "cuda", progress=False)
    for k, s in enumerate(seeds):
        one = train_copies(spec([s]), stream, "cuda", progress=False)
        for n, t in one.state.items():
            torch.testing.assert_close(ens.state[n][k : k + 1], t, rtol=1e-4, atol=1e-5)
    again = train_copies(spec(seeds), stream, "cuda", progress=False)
    assert all(torch.equal(again.state[n], ens.state[n]) for n in ens.state), "same seeds, different weights"


def bf16_trains():
    g = torch.Generator().manual_seed(0)
    stream = torch.randint(0, 60, (20000,), generator=g)
    cfg = model_preset("tinygpt", vocab_size=60)
    res = train_copies(RunSpec(model=cfg, train=TrainConfig(steps=30, batch_size=8, optimizer="adamw", lr=3e-3,
                                                            schedule="cosine", precision="bf16"),
                               seeds=(Seeds(0, 1, 1), Seeds(1, 2, 2))), stream, "cuda", progress=False)
    assert res.history.loss.iloc[-2:].mean() < res.history.loss.iloc[:2].mean()


def study(name):
    def run():
        mod = importlib.import_module(f"lmc_core.studies.{name}")
        with tempfile.TemporaryDirectory() as d:
            params = {"profile": "smoke", "device": "cuda", "progress": False, "figures_dir": f"{d}/f",
                      "store_dir": f"{d}/s"}
            if name == "finetuning":
                params["run_encoder"] = False  # the MiniLM package is large: checked on CPU
            res = mod.run(params)
            assert res.summary and res.files
    return run


def main():
    if not torch.cuda.is_available():
        print("no CUDA device visible")
        return 1
    print(f"# {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = check("ensemble copy k = lone run on CUDA; same seeds bit-identical", copies_match)
    ok &= check("the same with the fused output layer and cross-entropy",
                lambda: copies_match(fused_cross_entropy=True))
    ok &= check("bf16 autocast trains", bf16_trains)
    for name in STUDIES:
        ok &= check(f"study {name}, smoke profile on CUDA", study(name))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
