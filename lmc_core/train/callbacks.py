"""What happens around the optimizer steps, as callbacks the training loop calls (open_lth's
`run_at_step` / `run_every_epoch` style): monitoring and training dynamics, divergence handling,
TensorBoard, the progress bar, a stop after n updates; checkpoints live with the run store
(`lmc_core.runs.checkpoints.Checkpointer`).

The loop calls, in this order of callbacks:
- `on_start(trainer)` once;
- after every update, `wants_flush(trainer, step)`: a callback that needs the loss log complete up
  to this step (to evaluate, to save) says so; the loop then moves the pending losses into the log
  and calls `on_flush(trainer, window, step)` with the rows added (also every `log_every` steps and
  at the end);
- `on_step(trainer, step)` after every update (and its flush); a callback may set `trainer.stop`;
- `on_end(trainer)` once, after the last flush.
`step` is the training front (the slowest copy that still trains).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from .trainer import Trainer, TrainingDiverged


class Callback:
    """Base class: every hook does nothing. `order` places a callback among the others (lower first)."""

    order = 50

    def on_start(self, t: Trainer) -> None:
        """Before the first update."""

    def wants_flush(self, t: Trainer, step: int) -> bool:
        """True if this callback needs the loss log flushed after this step."""
        return False

    def on_flush(self, t: Trainer, window: list[dict], step: int) -> None:
        """After the pending losses were moved into the log (`window`: the rows added)."""

    def on_step(self, t: Trainer, step: int) -> None:
        """After every update and its flush."""

    def kept_steps(self, t: Trainer) -> set[int]:
        """Steps this callback must see (on_step) even in a capped run's jump to the end (lmc_core.capped)."""
        return set()

    def on_end(self, t: Trainer) -> None:
        """After the last update and the final flush."""


def due(every: int, step: int) -> bool:
    """True every `every` steps (never when every is 0)."""
    return every > 0 and step % every == 0


class Monitor(Callback):
    """Every `spec.train.eval_every` steps and at the end: each copy's loss and accuracy on every monitored split
    (`<split>_loss`, `<split>_acc`) and its weight norm, added to its log row of that step; with `dynamics`, the
    per-example probabilities of the true label on that split too (dataset cartography: dyn.prob [E, K, N])."""

    order = 10

    def __init__(self, splits: dict, dynamics: str | None = None):
        self.splits, self.dynamics = dict(splits), dynamics
        if dynamics is not None and dynamics not in self.splits:
            raise ValueError(f"dynamics={dynamics!r} is not a monitored split; choose one of {sorted(self.splits)}")
        self.watch: dict = {}

    def on_start(self, t: Trainer) -> None:
        self.every = t.tc.eval_every
        self.watch = {n: t.family.eval_examples(t.cfg, d) for n, d in self.splits.items()} if self.every else {}

    def wants_flush(self, t: Trainer, step: int) -> bool:
        return bool(self.watch) and due(self.every, step)

    def on_flush(self, t: Trainer, window: list[dict], step: int) -> None:
        if not self.watch or not (due(self.every, step) or step >= t.end) or step in t.dynamics["steps"]:
            return
        gold = self.evaluate(t, window)
        if gold is not None:
            t.dynamics["steps"].append(step)
            t.dynamics["prob"].append(gold)

    def evaluate(self, t: Trainer, window: list[dict]) -> torch.Tensor | None:
        """Add the monitored metrics to each live copy's newest row; returns the gold-label probabilities [K, N]
        of the `dynamics` split (or None)."""
        last = {r["copy"]: r for r in window}  # each copy's newest row (copies that did not move have none)
        model = t.model
        state = {n: p.detach() for n, p in model.state_dict().items()}
        model.eval()
        gold = None
        try:
            for name, ex in self.watch.items():
                keep = ("examples", "probs") if name == self.dynamics else ()
                res = t.family.evaluate(t.cfg, state, ex, batch_size=256, device=t.device, keep=keep)
                for c, r in last.items():
                    r[f"{name}_loss"] = float(res.loss[c])
                    r[f"{name}_acc"] = float(res.accuracy[c])
                if name == self.dynamics:
                    p = torch.from_numpy(res.probs)  # [K, N, C]
                    y = torch.from_numpy(res.labels).long().view(1, -1, 1).expand(p.shape[0], -1, 1)
                    gold = p.gather(2, y)[..., 0]
            wnorm = torch.sqrt(sum((w.detach().reshape(w.shape[0], -1).double() ** 2).sum(1)
                                   for _, w in model.named_parameters()))  # [K], for weight-norm curves
            for c, r in last.items():
                r["weight_norm"] = float(wnorm[c])
        finally:
            model.train()
        return gold


class Divergence(Callback):
    """A copy whose loss is not finite, or whose mean loss over a logging window (after warm-up) exceeds
    diverge_factor x ln C, has diverged: with on_divergence="stop" training stops with TrainingDiverged
    (checkpoints written before are kept); with "freeze" that copy is frozen and the others go on."""

    order = 20

    def __init__(self, where: str = ""):
        self.where = where  # said in the error: where the kept checkpoints are

    def on_start(self, t: Trainer) -> None:
        self.limit = t.tc.diverge_factor * t.family.chance_loss(t.cfg)

    def on_flush(self, t: Trainer, window: list[dict], step: int) -> None:
        for c, s in self.check(t, window).items():
            t.record_divergence(c, s)
            print(f"copy {c} diverged at step {s}: frozen, the other copies go on", file=sys.stderr)

    def check(self, t: Trainer, window: list[dict]) -> dict[int, int]:
        """{copy: step} of the copies that diverged in this window (raises with on_divergence="stop")."""
        tc, out = t.tc, {}
        by_copy: dict[int, list[dict]] = {}
        for r in window:
            by_copy.setdefault(r["copy"], []).append(r)
        for c, rows in sorted(by_copy.items()):
            losses = [r["loss"] for r in rows]
            bad = next((r for r in rows if not math.isfinite(r["loss"])), None)
            late = [r["loss"] for r in rows if r["step"] > tc.warmup_steps]
            if bad is None and late and sum(late) / len(late) > self.limit:
                bad = rows[-1]
            if bad is None:
                continue
            if tc.on_divergence == "freeze":
                out[c] = int(bad["step"])
                continue
            kept = f" in {self.where}" if self.where else ""
            clip = "set clip_norm (now None)" if tc.clip_norm is None else f"lower clip_norm (now {tc.clip_norm})"
            raise TrainingDiverged(
                f"copy {c} diverged by step {bad['step']}: loss {bad['loss']:.4g} nats/token (mean "
                f"{sum(losses) / len(losses):.4g} over the last {len(losses)} steps; the limit is "
                f"{tc.diverge_factor:g} x ln V = {self.limit:.3g}) at lr {bad['lr']:.3g}. Lower lr (now {tc.lr}) or "
                f"{clip}; nothing was stored as a result, and checkpoints saved before this step are kept{kept}.")
        return out

    def on_end(self, t: Trainer) -> None:
        """The window flushed after the loop (a run stopped early): recorded, not frozen."""
        for c, s in self.check(t, getattr(t, "final_window", [])).items():
            t.record_divergence(c, s, freeze=False)


class TensorBoard(Callback):
    """Each copy's training loss and learning rate as TensorBoard scalars (train_loss/copy<k>, lr/copy<k>)."""

    order = 30

    def __init__(self, log_dir: str | Path):
        self.log_dir = Path(log_dir)

    def on_start(self, t: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir))

    def on_flush(self, t: Trainer, window: list[dict], step: int) -> None:
        for r in window:
            if not r.get("diverged"):
                self.writer.add_scalar(f"train_loss/copy{r['copy']}", r["loss"], r["step"])
                self.writer.add_scalar(f"lr/copy{r['copy']}", r["lr"], r["step"])

    def on_end(self, t: Trainer) -> None:
        for r in getattr(t, "final_window", []):
            self.on_flush(t, [r], r["step"])
        self.writer.close()


class ProgressBar(Callback):
    """A progress bar over the front's steps with the mean loss and learning rate of the newest step."""

    order = 90

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def on_start(self, t: Trainer) -> None:
        from ..progress import bar

        self.bar = bar(total=t.end, initial=t.front(), disable=not self.enabled, desc=f"train K={t.k}")

    def on_flush(self, t: Trainer, window: list[dict], step: int) -> None:
        last = [r for r in t.log[-2 * t.k:] if not r.get("diverged")][-t.k:] or t.log[-1:]
        self.bar.set_postfix(loss=f"{sum(r['loss'] for r in last) / max(len(last), 1):.3f}",
                             lr=f"{last[0]['lr']:.3g}", refresh=False)

    def on_step(self, t: Trainer, step: int) -> None:
        self.bar.update(min(t.front(), t.end) - self.bar.n)

    def on_end(self, t: Trainer) -> None:
        self.bar.close()


class StopAfter(Callback):
    """Stop after n updates in this call, as if the process had been killed (tests of resume)."""

    order = 80

    def __init__(self, n: int):
        self.n, self.done = n, 0

    def on_step(self, t: Trainer, step: int) -> None:
        self.done += 1
        if self.done >= self.n:
            t.stop = True
