"""Benchmark: the size ladder of notebook 07 (study 2's GPT models), one copy after another vs one ensemble.

For each model (ToyGPT and CompactGPT by default), side by side in one process:

- the study's way: an ordinary PyTorch GPT (study 2's GPT.py layout: pre-LayerNorm blocks, causal
  scaled_dot_product_attention, 4x GELU MLP, learned positions, tied embeddings, no dropout) with torch.optim.Adam,
  betas (0.9, 0.95), clip_grad_norm_(1.0), trained one copy after another;
- lmc_core's trainer at K=1, one copy after another (the same code as the ensemble, so the ensemble's gain is
  the batching alone);
- lmc_core's ensemble of K copies (weights with a leading K axis, one optimizer step, per-copy clipping), as
  notebook 07 trains its pairs.

All three use the notebook's recipe (Adam, warm-up + cosine, clipping 1) on random windows of a synthetic token
stream of the model's vocabulary, batch x context tokens per copy-step. Rates are copy-steps per second over the
timed steps (warm-up steps excluded); the loops' rates are measured on `--loop-copies` copies (a loop's
copy-steps/s do not depend on how many copies it trains).

    python bench/model_sizes.py                                    # CPU: ToyGPT and CompactGPT, K = 6
    python bench/model_sizes.py --device cuda --bf16 --vocab 50257 --ks 6 16 --steps 50   # one GPU, GPT-2's vocab
"""
from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import torch
import torch.nn.functional as F
from torch import nn

from lmc_core.config import RunSpec, Seeds, TrainConfig, model_preset
from lmc_core.train import resolve_device, train_copies


class Block(nn.Module):
    """A pre-LayerNorm GPT block (study 2's GPT.py)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, x):  # [B, T, d]
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class ReferenceGPT(nn.Module):
    """Study 2's GPT: token and learned position embeddings, blocks, final LayerNorm, tied output layer."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, context: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, idx):  # [B, T] -> [B, T, V]
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.ln_f(x) @ self.tok.weight.T


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def schedule(step: int, steps: int, lr: float = 6e-4, min_lr: float = 6e-5) -> float:
    """The study's learning rate: linear warm-up from min_lr over 10 % of the steps, cosine back to min_lr."""
    import math

    w = max(steps // 10, 1)
    if step < w:
        return min_lr + (lr - min_lr) * (step + 1) / w
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(steps - w, 1)))) * (lr - min_lr)


def loop_rate(cfg, steps: int, batch: int, dev, copies: int, bf16: bool) -> float:
    """Copy-steps/s of ordinary PyTorch GPTs trained one after another (the study's train.py)."""
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.vocab_size, (steps + 2, batch, cfg.context + 1), generator=g).to(dev)
    total = 0.0
    for c in range(copies):
        torch.manual_seed(c)
        m = ReferenceGPT(cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.context).to(dev).train()
        opt = torch.optim.Adam(m.parameters(), lr=6e-4, betas=(0.9, 0.95), eps=1e-8)

        def step(i):
            for grp in opt.param_groups:
                grp["lr"] = schedule(i, steps + 2)
            x = data[i]
            with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
                logits = m(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size).float(), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
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


def ensemble_rate(cfg, steps: int, batch: int, dev, k: int, bf16: bool) -> float:
    """Copy-steps/s of lmc_core's trainer with K copies (K=1: one copy; warm-up run excluded)."""
    n = (steps + 4) * batch * cfg.context + 1
    stream = torch.randint(0, cfg.vocab_size, (n,), generator=torch.Generator().manual_seed(0))
    seeds = tuple(Seeds(init=c // 2, data=1 + c, dropout=0) for c in range(k))

    def run(s):
        tc = TrainConfig(steps=s, batch_size=batch, optimizer="adam", lr=6e-4, min_lr=6e-5, warmup_from_min=True,
                         schedule="cosine", warmup_steps=max(s // 10, 1), betas=(0.9, 0.95), clip_norm=1.0,
                         precision="bf16" if bf16 else "fp32")
        sync(dev)
        t = time.perf_counter()
        train_copies(RunSpec(model=cfg, train=tc, seeds=seeds), stream, dev, progress=False, log_every=50)
        sync(dev)
        return time.perf_counter() - t

    warm = run(2)
    full = run(steps + 2)
    return k * steps / max(full - warm, 1e-9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", nargs="+", default=["toygpt", "compactgpt"])
    ap.add_argument("--ks", type=int, nargs="+", default=[6], help="ensemble sizes (6: three pairs)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per measurement (0: 30 ToyGPT, 5 others)")
    ap.add_argument("--vocab", type=int, default=4096, help="BPE vocabulary (4096; GPT-2's: 50257)")
    ap.add_argument("--batch", type=int, default=32, help="windows per copy-step (the study: 32)")
    ap.add_argument("--loop-copies", type=int, default=2, help="copies actually trained by each loop")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only), for every side")
    a = ap.parse_args(argv)
    dev = resolve_device(a.device)
    if a.bf16 and dev.type != "cuda":
        ap.error("--bf16 needs a CUDA device")
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"# model-size ladder benchmark, {date.today()}, {where}, torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"# vocab {a.vocab}, batch {a.batch} x the model's context, Adam + warm-up/cosine + clipping 1, "
          f"{'bf16 autocast' if a.bf16 else 'fp32'}")
    print("| model | how | K | copy-steps/s | vs study's loop |\n|---|---|---|---|---|")
    for name in a.models:
        cfg = model_preset(name, vocab_size=a.vocab)
        steps = a.steps or (30 if name in ("tinygpt", "toygpt") else 5)
        loop = loop_rate(cfg, steps, a.batch, dev, a.loop_copies, a.bf16)
        print(f"| {name} (context {cfg.context}) | one copy after another (plain PyTorch GPT, torch.optim) | any | "
              f"{loop:.2f} | 1.00x |", flush=True)
        one = ensemble_rate(cfg, steps, a.batch, dev, 1, a.bf16)
        print(f"| {name} | one copy after another (lmc_core at K=1) | any | {one:.2f} | {one / loop:.2f}x |", flush=True)
        for k in a.ks:
            r = ensemble_rate(cfg, steps, a.batch, dev, k, a.bf16)
            print(f"| {name} | lmc_core ensemble (leading K axis) | {k} | {r:.2f} | {r / loop:.2f}x "
                  f"({r / one:.2f}x vs K=1) |", flush=True)


if __name__ == "__main__":
    main()
