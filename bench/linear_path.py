"""Benchmark: time per call of lmc_core.linear_path against loss-landscapes' linear_interpolation (the tool
researchers use today, when it is installed), on the same two models and data in one run; and lmc_core's two
evaluation routes (all alphas batched, one alpha at a time) beside its default.

Two ordinary nn.Sequential MLPs (d_in-w-w-w-10, ReLU, independent random weights: the cost does not depend on the
weights) and N examples with labels. Every way evaluates the loss of every alpha on all N examples; lmc_core also
the top-1 error, and its result holds the barrier under every definition for both, the verdicts and the tables,
built on first access: the row "default + every table read" times the call and that first access together.
The curves are checked to agree before any time is printed. The ways take turns, round after round, each making a few
calls in a row (so that a busy neighbour slows all of them alike), and the best call of each is kept: CPU time of the
process on a CPU (time.process_time), wall time with synchronisation on a GPU.

    python bench/linear_path.py                                   # CPU: 3x512 MLP, 2048 examples, 25 alphas
    python bench/linear_path.py --width 64 --examples 1000 --batch-size 1000
    python bench/linear_path.py --width 32 --examples 256 --batch-size 256 --alphas 51
    python bench/linear_path.py --mix                             # also the weight mixing alone, and its exactness
    python bench/linear_path.py --width 1024 --examples 16384 --alphas 51 --device cuda
"""
from __future__ import annotations

import argparse
import copy
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


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where the platform does not count them)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def rounds(ways: dict, repeats: int, calls: int, clock, sync) -> tuple[dict, dict, dict]:
    """The best time per call of each way over `repeats` rounds, each way's last result and its minor page faults
    per call (fresh pages: glibc trims the heap's top after a free, by thresholds that move with what the process
    freed before, so the same code may fault at every call in one process and never in another). In a round the
    ways take turns, each making `calls` calls in a row (a way called repeatedly, as over many pairs of models); a
    busy neighbour thus slows every way alike."""
    best, out, faults = dict.fromkeys(ways, float("inf")), {}, dict.fromkeys(ways, 0)
    for _ in range(repeats):
        for k, f in ways.items():
            for _ in range(calls):
                f0 = minor_faults()
                t = clock()
                out[k] = f()
                sync()
                best[k] = min(best[k], clock() - t)
                faults[k] += minor_faults() - f0
    return best, out, {k: v / (repeats * calls) for k, v in faults.items()}


def read_all(result):
    """The result, its curve, barriers and verdicts built (they are built on first access)."""
    result.curve, result.barriers, result.verdicts  # noqa: B018
    return result


def loss_landscapes_way(ma: nn.Module, mb: nn.Module, x: torch.Tensor, y: torch.Tensor, alphas: int):
    """loss-landscapes' linear_interpolation as researchers call it (a copy of A, which it moves along the line),
    plus alpha = 0 (it evaluates alpha = 1/steps, ..., 1): the losses [alphas], or None when it is not installed."""
    if importlib.util.find_spec("loss_landscapes") is None:
        return None
    import loss_landscapes
    import loss_landscapes.metrics as metrics

    metric = metrics.Loss(nn.CrossEntropyLoss(), x, y)
    wrap = loss_landscapes.model_interface.model_wrapper.wrap_model
    return lambda: np.array([metric(wrap(ma)), *loss_landscapes.linear_interpolation(copy.deepcopy(ma), mb, metric,
                                                                                      alphas - 1)])


def mix_costs(ma: nn.Module, mb: nn.Module, x: torch.Tensor, alphas: int, repeats: int) -> dict:
    """Seconds of mixing the weights of one path (every alpha), each mix followed by a forward pass of the working
    copy on x (as in a path: the weights are no longer in cache), best of `repeats`: lmc_core's packed writer (the
    default one alpha at a time: float64, rounded once, exact at both ends), its tensor-by-tensor writer (models too
    large to pack), and loss-landscapes' float32 add_ of (B - A) / steps (when installed: not exact, its last point
    is not model B), each with the seconds of setting it up. The forward passes are not counted."""
    from lmc_core.analysis import interpolate, packing

    al = np.linspace(0.0, 1.0, alphas)
    pa, pb = ({n: p.detach() for n, p in m.named_parameters()} for m in (ma, mb))

    def packed(work):
        slots = list(work.parameters())
        return packing.packed_writer(list(pa.values()), list(pb.values()), packing.pack_slots(slots), al)

    def by_tensor(work):
        return interpolate.weight_writer(pa, pb, dict(work.named_parameters()), al, 0)

    ways = {"lmc_core, packed (float64, exact)": packed, "lmc_core, tensor by tensor (float64, exact)": by_tensor}
    if importlib.util.find_spec("loss_landscapes") is not None:
        ways["loss-landscapes, float32 add_"] = lambda work: accumulating_writer(work, mb, alphas)[0]
    best = {k: (float("inf"), float("inf")) for k in ways}
    with torch.no_grad():
        for _ in range(repeats):
            for k, make in ways.items():
                work = copy.deepcopy(ma)
                t = time.perf_counter()
                write = make(work)
                setup, mixing = time.perf_counter() - t, 0.0
                for i in range(alphas):
                    t = time.perf_counter()
                    write(i)
                    mixing += time.perf_counter() - t
                    work(x)
                best[k] = min(best[k], (mixing, setup))
    return best


def accumulating_writer(work: nn.Module, mb: nn.Module, alphas: int):
    """loss-landscapes' own stepping along the line from `work` (moved in place) to model B: (a function i -> None
    that takes the step to alpha i, nothing at i = 0; its ModelParameters of `work`)."""
    import loss_landscapes
    wrap = loss_landscapes.model_interface.model_wrapper.wrap_model
    start, end = wrap(work).get_module_parameters(), wrap(copy.deepcopy(mb)).get_module_parameters()
    step = (end - start) / (alphas - 1)
    return (lambda i: start.add_(step) if i else None), start


def accumulated_end(ma: nn.Module, mb: nn.Module, alphas: int) -> tuple[int, int, float]:
    """loss-landscapes' last point against model B: (weights that differ, weights, largest absolute difference) after
    its alphas - 1 float32 steps of (B - A) / steps from A (lmc_core's last point is model B bit for bit)."""
    with torch.no_grad():
        write, start = accumulating_writer(copy.deepcopy(ma), mb, alphas)
        for i in range(alphas):
            write(i)
        diff = [(p - q).abs() for p, q in zip(start.parameters, mb.parameters())]
    return (sum(int((d > 0).sum()) for d in diff), sum(d.numel() for d in diff), max(float(d.max()) for d in diff))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d-in", type=int, default=40)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--examples", type=int, default=2048)
    ap.add_argument("--alphas", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5, help="rounds; the best call of each way is kept")
    ap.add_argument("--calls", type=int, default=3, help="calls in a row of each way in a round")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mix", action="store_true", help="also time the weight mixing alone (CPU): lmc_core's exact "
                    "float64 writers against loss-landscapes' float32 add_, each mix followed by a forward pass")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.examples, a.d_in, generator=g).to(dev)
    y = torch.randint(0, 10, (a.examples,), generator=g).to(dev)
    ma, mb = mlp(0, a.d_in, a.width, dev), mlp(1, a.d_in, a.width, dev)
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# linear-path benchmark, {date.today()}, {name}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"# two MLPs {a.d_in}-{a.width}-{a.width}-{a.width}-10, {a.examples} examples, {a.alphas} alphas, "
          f"batch {a.batch_size}; best of {a.repeats} rounds of {a.calls} calls in a row, "
          f"{'wall' if cuda else 'CPU'} time per call")
    kw = dict(alphas=a.alphas, batch_size=a.batch_size)
    ways = {"lmc_core.linear_path (default)": lambda: linear_path(ma, mb, (x, y), **kw),
            "lmc_core, default + every table read": lambda: read_all(linear_path(ma, mb, (x, y), **kw)),
            "lmc_core, all alphas batched (vmap)": lambda: linear_path(ma, mb, (x, y), batched=True, **kw),
            "lmc_core, one alpha at a time": lambda: linear_path(ma, mb, (x, y), batched=False, **kw)}
    ll = loss_landscapes_way(ma, mb, x, y, a.alphas)
    if ll is not None:
        ways = {"loss-landscapes linear_interpolation": ll, **ways}
    else:
        print("# loss-landscapes is not installed (pip install loss-landscapes): its row is left out")
    best, out, faults = rounds(ways, a.repeats, a.calls, time.perf_counter if cuda else time.process_time, sync)
    ours = out["lmc_core.linear_path (default)"]
    for k, r in out.items():
        np.testing.assert_allclose(r if isinstance(r, np.ndarray) else r.curve.loss, ours.curve.loss, rtol=1e-4,
                                   atol=1e-5, err_msg=k)
    ref = best.get("loss-landscapes linear_interpolation")
    print(f"# lmc_core's default evaluated {ours.mode!r}")
    print(f"{'how':<40} {'seconds':>9} {'alpha points/s':>15} {'vs loss-landscapes':>19} {'page faults/call':>17}")
    for how, t in best.items():
        print(f"{how:<40} {t:>9.4f} {a.alphas / t:>15.1f} {f'{ref / t:.2f}x' if ref else '-':>19} "
              f"{faults[how]:>17.0f}")
    if a.mix and not cuda:
        print(f"# mixing the weights of one path ({a.alphas} alphas), each mix followed by a forward pass; best of "
              f"{a.repeats}, wall time; the forward passes not counted")
        print(f"{'how':<46} {'mixing, s':>10} {'set-up, s':>10}")
        for how, (mixing, setup) in mix_costs(ma, mb, x, a.alphas, a.repeats).items():
            print(f"{how:<46} {mixing:>10.4f} {setup:>10.4f}")
        if ll is not None:
            differ, total, top = accumulated_end(ma, mb, a.alphas)
            print(f"loss-landscapes' point at alpha = 1 differs from model B in {differ} of {total} weights (largest "
                  f"absolute difference {top:.3g}); lmc_core's is model B bit for bit")
    if ref:
        print(f"lmc_core vs loss-landscapes: {ref / best['lmc_core.linear_path (default)']:.2f}x (time per call of "
              f"loss-landscapes / of lmc_core.linear_path; above 1: lmc_core is faster); with every table read: "
              f"{ref / best['lmc_core, default + every table read']:.2f}x")


if __name__ == "__main__":
    main()
