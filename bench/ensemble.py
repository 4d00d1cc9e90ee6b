"""Benchmark: K copies trained one after another vs as one K-copy ensemble, side by side, in each training path.

The loop baseline is what the seed studies do: an ordinary PyTorch model (nn.TransformerEncoder
with a causal mask, the PyTorch word-LM tutorial's layout), torch.optim, clip_grad_norm_, trained
one copy after another. The ensemble is lmc_core's trainer (weights with a leading K axis, one
optimizer step for all copies, per-copy clipping, per-copy dropout streams). Both train the
d=200, 2-layer PTB-size LM with SGD on batches of 20 x 35 tokens (or the quick profile's char model).

Paths (--paths): `eager` (the default TrainConfig: a torch.Generator per copy for dropout on a CPU),
`hash` (dropout_masks='hash', eager), `compiled` (dropout_masks='hash', compile=True), and each with `+bf16`
(precision='bf16': autocast, on a GPU or a CPU with bf16 instructions; the loop then runs under autocast too).
A compiled path's first steps include the compilation: its seconds are printed and its rate is measured after
them, with the break-even (compile seconds / seconds saved per step against the eager path) in steps.

    python bench/ensemble.py                       # CPU: K = 1 and 8, eager
    python bench/ensemble.py --vocab 72 --d-model 64 --batch 16 --ks 8 --paths eager compiled compiled+bf16
    python bench/ensemble.py --device cuda --ks 1 8 64 --vocab 10000 --steps 50
    python bench/ensemble.py --preset tinygpt --vocab 72 --d-model 64 --batch 16 --ks 10 --paths eager+bf16 compiled
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from datetime import date

import torch
from torch import nn

from lmc_core.config import RunSpec, Seeds, TrainConfig, model_preset
from lmc_core.train import resolve_device
from lmc_core.train.trainer import Trainer, check_bf16

# notebook 03's (and 04's, 05's control) pre-norm LM: tinygpt with these fields (lmc_core.studies.finetuning)
TINYGPT_03 = {"context": 64, "n_layers": 2}
PATHS = {"eager": {}, "hash": {"dropout_masks": "hash"}, "compiled": {"dropout_masks": "hash", "compile": True}}
MODIFIERS = ("bf16", "fused")  # +bf16: precision="bf16"; +fused: fused_cross_entropy=True


def path_config(path: str) -> dict:
    """TrainConfig fields of a --paths entry: a name of PATHS, then any of +bf16 and +fused."""
    name, *mods = path.split("+")
    if name not in PATHS or any(m not in MODIFIERS for m in mods) or len(set(mods)) != len(mods):
        raise ValueError(f"--paths {path!r}: choose from {sorted(PATHS)}, each optionally with +bf16 and/or +fused")
    return {**PATHS[name], "precision": "bf16" if "bf16" in mods else "fp32", "fused_cross_entropy": "fused" in mods}


class ReferenceLM(nn.Module):
    """The PyTorch word-LM tutorial's TransformerModel (as used by the PTB instability study)."""

    def __init__(self, vocab: int, d: int = 200, heads: int = 2, d_ff: int | None = None, layers: int = 2,
                 dropout: float = 0.2, context: int = 35):
        super().__init__()
        d_ff = d_ff or d
        self.emb = nn.Embedding(vocab, d)
        pe = torch.zeros(context, d)
        pos = torch.arange(context).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d, heads, d_ff, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))
        self.d = d

    def forward(self, x):  # [B, T]
        h = self.drop(self.emb(x) * math.sqrt(self.d) + self.pe[: x.shape[1]])
        return self.out(self.encoder(h, mask=self.mask[: x.shape[1], : x.shape[1]], is_causal=True))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


class LoopSide:
    """One ordinary model (the seed studies' way) stepping through its own batches: a loop's copy-steps/s do not
    depend on how many copies it trains one after another."""

    def __init__(self, vocab, steps, batch, dev, bf16, d=200):
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, vocab, (steps, batch, 36), generator=g).to(dev)
        torch.manual_seed(0)
        self.m = ReferenceLM(vocab, d).to(dev).train()
        self.opt = torch.optim.SGD(self.m.parameters(), lr=2.5)
        self.vocab, self.dev, self.bf16, self.k, self.i = vocab, dev, bf16, 1, 0

    def step(self):
        x = self.data[self.i % len(self.data)]
        self.i += 1
        with torch.autocast(self.dev.type, torch.bfloat16, enabled=self.bf16):
            logits = self.m(x[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, self.vocab).float(), x[:, 1:].reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.m.parameters(), 0.5)
        self.opt.step()


class EnsembleSide:
    """lmc_core's K-copy trainer in one training path (see the module docstring)."""

    def __init__(self, vocab, steps, batch, dev, k, path, d=200, preset="ptb-transformer"):
        stream = torch.randint(0, vocab, ((steps + 8) * batch * 64 + 1,), generator=torch.Generator().manual_seed(0))
        model = (model_preset("ptb-transformer", vocab_size=vocab, d_model=d, d_ff=d) if preset == "ptb-transformer"
                 else model_preset(preset, vocab_size=vocab, d_model=d, **TINYGPT_03))
        tc = TrainConfig(steps=steps + 8, batch_size=batch, **path_config(path))
        self.trainer = Trainer(RunSpec(model=model, train=tc, seeds=tuple(Seeds(0, i, i) for i in range(k))), stream,
                               dev)
        self.k = k

    def step(self):
        self.trainer.step()


def timed(side, steps, dev) -> float:
    """Seconds of `steps` steps of one side."""
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        side.step()
    sync(dev)
    return time.perf_counter() - t


def measure(sides: dict, steps: int, rounds: int, dev, warm: int = 3) -> tuple[dict, dict]:
    """({name: copy-steps/s}, {name: seconds of its first `warm` steps}): every side warms up (a compiled path
    compiles there), then the sides take turns, `steps` steps each per round, and each rate is the median over the
    rounds, so that load from other processes hits every side alike."""
    first = {n: timed(s, warm, dev) for n, s in sides.items()}
    per_round = {n: [] for n in sides}
    for _ in range(rounds):
        for n, s in sides.items():
            per_round[n].append(s.k * steps / timed(s, steps, dev))
    return {n: statistics.median(v) for n, v in per_round.items()}, first


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per side and round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--d-model", type=int, default=200, help="width (d_ff = d_model, as in the PTB study)")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--preset", default="ptb-transformer", choices=("ptb-transformer", "tinygpt"),
                    help="the ensemble's model: the PTB study's post-norm LM (the loop trains the same), or notebook "
                         "03's pre-norm tinygpt, context 64, 2 layers (no loop: rates against the eager path)")
    ap.add_argument("--paths", nargs="+", default=["eager"],
                    help="lmc_core training paths: eager, hash, compiled, each optionally +bf16 and/or +fused")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's setting)")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, print torch.profiler's busiest operations of each lmc_core side (10 steps)")
    ap.add_argument("--cold-compile", action="store_true",
                    help="compile into an empty inductor cache (a first run on a new machine), not the user's cache")
    a = ap.parse_args(argv)
    if a.cold_compile:
        import tempfile

        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    for path in a.paths:
        try:
            fields = path_config(path)
        except ValueError as e:
            ap.error(str(e))
        if fields["precision"] == "bf16":
            check_bf16(dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# ensemble benchmark, {date.today()}, {name}, torch {torch.__version__}, python {platform.python_version()}")
    ptb = a.preset == "ptb-transformer"
    print(f"# d={a.d_model} 2-layer post-norm LM, vocab {a.vocab}, batch {a.batch} x 35, SGD, dropout 0.2, "
          f"{a.steps} timed steps" if ptb else f"# tinygpt (pre-norm, no dropout) d={a.d_model}, {TINYGPT_03}, vocab "
          f"{a.vocab}, batch {a.batch} x {TINYGPT_03['context']}, SGD, {a.steps} timed steps; no loop: against eager")
    if not ptb and "eager" not in a.paths:
        a.paths = ["eager", *a.paths]  # the baseline of a preset without a loop
    total = (a.steps + 3) * a.rounds + 8
    sides = {("loop", bf16): LoopSide(a.vocab, total, a.batch, dev, bf16, a.d_model)
             for bf16 in sorted({"+bf16" in p for p in a.paths} | {False})} if ptb else {}
    sides.update({(path, k): EnsembleSide(a.vocab, total, a.batch, dev, k, path, a.d_model, a.preset)
                  for k in a.ks for path in a.paths})
    rate, first = measure(sides, a.steps, a.rounds, dev)
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        for (path, k), side in sides.items():
            if path != "loop":
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    timed(side, 10, dev)
                print(f"# torch.profiler, lmc_core ensemble, {path}, K = {k}, 10 steps (self CPU time)")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if not ptb:
        print(f"# median of {a.rounds} interleaved rounds of {a.steps} steps per side, after 3 warm-up steps each")
        print("| how | K | copy-steps/s | vs eager fp32 | first 3 steps (s) |\n|---|---|---|---|---|")
        for k in a.ks:
            for path in a.paths:
                print(f"| lmc_core ensemble, {path} | {k} | {rate[(path, k)]:.1f} | "
                      f"{rate[(path, k)] / rate[('eager', k)]:.2f}x | {first[(path, k)]:.1f} |")
        return
    loop = rate[("loop", False)]
    print(f"# inductor cache: {'empty (cold compile)' if a.cold_compile else 'the default one (may be warm)'}; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"# median of {a.rounds} interleaved rounds of {a.steps} steps per side, after 3 warm-up steps each")
    print("| how | K | copy-steps/s | vs fp32 loop | first 3 steps (s) | break-even vs eager (steps) |")
    print("|---|---|---|---|---|---|")
    print(f"| one copy after another (nn.TransformerEncoder, torch.optim), fp32 | any | {loop:.1f} | 1.00x | | |")
    if ("loop", True) in rate:
        r = rate[("loop", True)]
        print(f"| one copy after another, bf16 autocast | any | {r:.1f} | {r / loop:.2f}x | | |")
    for k in a.ks:
        eager = rate.get(("eager", k))
        for path in a.paths:
            r, f = rate[(path, k)], first[(path, k)]
            even = ""
            if path.startswith("compiled") and eager:
                saved = k / eager - k / r  # seconds saved per step against the eager path
                even = f"{f / saved:.0f}" if saved > 0 else "never"
            print(f"| lmc_core ensemble, {path} | {k} | {r:.1f} | {r / loop:.2f}x | {f:.1f} | {even} |")


if __name__ == "__main__":
    main()
