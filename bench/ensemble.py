"""Benchmark: K copies trained one after another vs as one K-copy ensemble, side by side.

The loop baseline is what the seed studies do: an ordinary PyTorch model (nn.TransformerEncoder
with a causal mask, the PyTorch word-LM tutorial's layout), torch.optim, clip_grad_norm_, trained
one copy after another. The ensemble is lmc_core's trainer (weights with a leading K axis, one
optimizer step for all copies, per-copy clipping, per-copy dropout streams). Both train the
d=200, 2-layer PTB-size LM with SGD on batches of 20 x 35 tokens.

    python bench/ensemble.py                       # CPU: K = 1 and 8
    python bench/ensemble.py --device cuda --ks 1 8 64 --vocab 10000 --steps 50
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from datetime import date

import torch
from torch import nn

from lmc_core.config import RunSpec, Seeds, TrainConfig, model_preset
from lmc_core.train import resolve_device, train_copies


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


def loop_rate(vocab, steps, batch, dev, copies, bf16, d=200):
    """Copy-steps/s of ordinary models trained one after another."""
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (steps + 2, batch, 36), generator=g).to(dev)
    total = 0.0
    for c in range(copies):
        torch.manual_seed(c)
        m = ReferenceLM(vocab, d).to(dev).train()
        opt = torch.optim.SGD(m.parameters(), lr=2.5)
        loss_fn = nn.CrossEntropyLoss()

        def step(i):
            x = data[i]
            with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
                logits = m(x[:, :-1])
            loss = loss_fn(logits.reshape(-1, vocab).float(), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
            opt.step()

        for i in range(2):  # warm-up
            step(i)
        sync(dev)
        t = time.perf_counter()
        for i in range(steps):
            step(i + 2)
        sync(dev)
        total += time.perf_counter() - t
    return copies * steps / total


def ensemble_rate(vocab, steps, batch, dev, k, bf16, d=200):
    """Copy-steps/s of lmc_core's K-copy ensemble trainer (warm-up run excluded)."""
    stream = torch.randint(0, vocab, ((steps + 4) * batch * 35 + 1,), generator=torch.Generator().manual_seed(0))
    model = model_preset("ptb-transformer", vocab_size=vocab, d_model=d, d_ff=d)
    seeds = tuple(Seeds(0, i, i) for i in range(k))

    def run(n):
        tc = TrainConfig(steps=n, batch_size=batch, precision="bf16" if bf16 else "fp32")
        sync(dev)
        t = time.perf_counter()
        train_copies(RunSpec(model=model, train=tc, seeds=seeds), stream, dev, progress=False, log_every=50)
        sync(dev)
        return time.perf_counter() - t

    warm = run(2)
    full = run(steps + 2)
    return k * steps / max(full - warm, 1e-9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--d-model", type=int, default=200, help="width (d_ff = d_model, as in the PTB study)")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--loop-copies", type=int, default=2, help="copies actually trained in the loop baseline")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only), for both sides")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    if a.bf16 and dev.type != "cuda":
        ap.error("--bf16 needs a CUDA device")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# ensemble benchmark, {date.today()}, {name}, torch {torch.__version__}, python {platform.python_version()}")
    print(f"# d={a.d_model} 2-layer post-norm LM, vocab {a.vocab}, batch {a.batch} x 35, SGD, "
          f"{'bf16 autocast' if a.bf16 else 'fp32'}, {a.steps} timed steps")
    loop = loop_rate(a.vocab, a.steps, a.batch, dev, a.loop_copies, a.bf16, a.d_model)
    print("| how | K | copy-steps/s | vs loop |\n|---|---|---|---|")
    print(f"| one copy after another (nn.TransformerEncoder, torch.optim) | any | {loop:.1f} | 1.00x |")
    for k in a.ks:
        r = ensemble_rate(a.vocab, a.steps, a.batch, dev, k, a.bf16, a.d_model)
        print(f"| lmc_core ensemble (leading K axis) | {k} | {r:.1f} | {r / loop:.2f}x |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
