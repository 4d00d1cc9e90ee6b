"""Benchmark: alpha points per second of lmc_core.linear_path, batched vs one alpha at a time, on the same two
models and data in one run (and loss-landscapes' linear_interpolation, the tool researchers use today, when it is
installed: it also evaluates one alpha at a time).

Two ordinary nn.Sequential MLPs (d_in-w-w-w-10, ReLU, independent random weights: the cost does not depend on the
weights) and N examples with labels. Every way evaluates the loss (and lmc_core also the error) of every alpha
on all N examples; the curves are checked to agree before any rate is printed.

    python bench/linear_path.py                                   # CPU: 3x512 MLP, 2048 examples, 25 alphas
    python bench/linear_path.py --width 1024 --examples 16384 --alphas 51 --device cuda
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from datetime import date

import numpy as np
import torch
from torch import nn

from lmc_core import linear_path
from lmc_core.train import resolve_device


def mlp(seed: int, d_in: int, width: int, device) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).to(device).eval()


def timed(fn, repeats: int, sync) -> tuple[float, object]:
    """Best wall time of `repeats` calls (after one warm-up call) and the last result."""
    out = fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-in", type=int, default=40)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--alphas", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.examples, a.d_in, generator=g).to(dev)
    y = torch.randint(0, 10, (a.examples,), generator=g).to(dev)
    ma, mb = mlp(0, a.d_in, a.width, dev), mlp(1, a.d_in, a.width, dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# linear-path benchmark, {date.today()}, {name}, torch {torch.__version__}, python {platform.python_version()}")
    print(f"# two MLPs {a.d_in}-{a.width}-{a.width}-{a.width}-10, {a.examples} examples, {a.alphas} alphas, "
          f"batch {a.batch_size}")
    kw = dict(alphas=a.alphas, batch_size=a.batch_size)
    t_one, one = timed(lambda: linear_path(ma, mb, (x, y), batched=False, **kw), a.repeats, sync)
    t_bat, bat = timed(lambda: linear_path(ma, mb, (x, y), batched=True, **kw), a.repeats, sync)
    np.testing.assert_allclose(bat.curve.loss, one.curve.loss, rtol=1e-5)
    rows = [("lmc_core, one alpha at a time", t_one), ("lmc_core, all alphas batched (vmap)", t_bat)]
    if importlib.util.find_spec("loss_landscapes") is not None:
        import copy

        import loss_landscapes
        import loss_landscapes.metrics as metrics

        metric = metrics.Loss(nn.CrossEntropyLoss(), x, y)
        steps = a.alphas - 1  # it evaluates alpha = 1/steps ... 1; one more point for alpha 0 below
        t_ll, ll = timed(lambda: (metric(loss_landscapes.model_interface.model_wrapper.wrap_model(ma)),
                                  loss_landscapes.linear_interpolation(copy.deepcopy(ma), mb, metric, steps)),
                         a.repeats, sync)
        np.testing.assert_allclose(ll[1], bat.curve.loss.to_numpy()[1:], rtol=1e-4, atol=1e-5)
        rows.insert(0, ("loss-landscapes linear_interpolation", t_ll))
    else:
        print("# loss-landscapes is not installed (pip install loss-landscapes): its row is left out")
    print(f"{'how':<40} {'seconds':>9} {'alpha points/s':>15} {'vs one at a time':>17}")
    for how, t in rows:
        print(f"{how:<40} {t:>9.3f} {a.alphas / t:>15.1f} {t_one / t:>16.2f}x")


if __name__ == "__main__":
    main()
