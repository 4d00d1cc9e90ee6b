"""The Family seam: what the trainer, the run store, interpolation, alignment and evaluation need to know
about a model family, and nothing else.

A family turns its config into a stacked K-copy model (`build`, `init`), its data into `Examples`
(`train_examples`, `eval_examples`), a batch into logits and targets (`outputs`; the per-copy mean
loss `loss` is the cross-entropy of those), and a stacked state into per-example results
(`evaluate`). It also says which parameters are interpolated in each tuning mode, which are task
heads (kept per endpoint), and how its hidden units may be permuted (`perm_spec`). The stacked
state — a dict of tensors with the copy axis first — is the one currency between all of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import rng
from ..data.batches import Examples
from ..publish.progress import bar

State = dict[str, torch.Tensor]
FISHER_SITE = 0xF15E  # random-number site of the sampled Fisher labels (distinct from dropout sites)


@dataclass
class EvalResult:
    """Evaluation of K copies on the same examples: per-copy means and, kept, per-example arrays.

    loss / accuracy: [K] means; examples: N (tokens for a language model); per_example_loss [K, N]
    (float32), per_example_correct [K, N] (bool), probs [K, N, C] (when asked), labels [N].
    """

    loss: np.ndarray
    accuracy: np.ndarray
    tokens: int
    per_example_loss: np.ndarray | None = None
    per_example_correct: np.ndarray | None = None
    probs: np.ndarray | None = None
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None  # [K, N] top-1 probability (keep "confidence"), for calibration

    @property
    def examples(self) -> int:
        """Examples (tokens) evaluated per copy."""
        return self.tokens

    @property
    def ppl(self) -> np.ndarray:
        """Perplexity exp(mean CE)."""
        with np.errstate(over="ignore"):
            return np.exp(self.loss)

    @property
    def error(self) -> np.ndarray:
        """Top-1 error."""
        return 1.0 - self.accuracy


class Family:
    """Base class of a model family (see the module docstring); subclasses fill in the model-specific parts."""

    name = ""
    config_type: type = object
    data_type: type = object
    metrics: tuple[str, ...] = ("loss", "error")

    # --- model
    def build(self, cfg, k: int) -> torch.nn.Module:
        """A K-copy model (uninitialised)."""
        raise NotImplementedError

    def init(self, cfg, seeds: list[int]) -> State:
        """Stacked state of copies initialised from their init seeds (equal seeds give equal copies)."""
        return self.build(cfg, len(seeds)).init_weights(list(seeds)).state_dict()

    def model_from_state(self, cfg, state: State, device="cpu") -> torch.nn.Module:
        """A K-copy model holding exactly `state`."""
        k = next(iter(state.values())).shape[0]
        m = self.build(cfg, k).to(device)
        m.load_state_dict(state)
        return m

    def frozen_keys(self, cfg) -> set[str]:
        """Parameters that never train (equal to their initialisation; the store rebuilds them)."""
        return set()

    def dropout(self, cfg) -> float:
        """Dropout probability of the model (0: no dropout masks are drawn)."""
        return float(getattr(cfg, "dropout", 0.0))

    def n_classes(self, cfg) -> int:
        """Number of output classes (vocabulary size for a language model)."""
        raise NotImplementedError

    def chance_loss(self, cfg) -> float:
        """Cross-entropy of a uniform guess, ln C (divergence is judged against it)."""
        return math.log(self.n_classes(cfg))

    # --- data
    def train_examples(self, spec, source) -> Examples:
        """Training examples from the family's data source (checked against the model)."""
        raise NotImplementedError

    def eval_examples(self, cfg, source, limit: int | None = None) -> Examples:
        """Evaluation examples of one split (the first `limit` examples, or tokens for an LM)."""
        raise NotImplementedError

    # --- computation
    def outputs(self, model, batch: dict[str, torch.Tensor], drop=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [K, N, C], targets [K or 1, N]) of a batch whose tensors are [K or 1, B, ...]."""
        raise NotImplementedError

    def loss(self, model, batch: dict[str, torch.Tensor], drop=None, budget_mb: float | None = None) -> torch.Tensor:
        """Mean training loss of each copy [K] (the sum over copies is what is minimised)."""
        logits, targets = self.outputs(model, batch, drop)
        k, n, c = logits.shape
        ce = F.cross_entropy(logits.reshape(-1, c).float(), targets.expand(k, n).reshape(-1), reduction="none")
        return ce.view(k, n).mean(1)

    def eval_bytes_per_example(self, cfg) -> int:
        """Memory of one example's logits and softmax temporaries, for grouping copies in evaluation."""
        return self.n_classes(cfg) * 4 * 3

    # --- what is interpolated, kept, permuted
    def interp_keys(self, cfg, state: State, mode: str = "full") -> set[str] | None:
        """Parameters interpolated in tuning mode `mode` (None: all)."""
        return None

    def head_keys(self, cfg, state: State) -> set[str]:
        """Task-head parameters (kept per endpoint when two endpoints solve different tasks)."""
        return set()

    def perm_spec(self, cfg):
        """Permutation spec of the hidden units (lmc_core.align), or None."""
        return None

    # --- evaluation
    @torch.no_grad()
    def evaluate(self, cfg, state: State, examples: Examples, batch_size: int = 32, device="cpu",
                 memory_mb: int = 512, keep: tuple[str, ...] = (), progress: bool = False,
                 desc: str = "eval") -> EvalResult:
        """Evaluate every copy of a stacked state on the same examples (eval mode).

        Copies are processed in groups sized so the logits stay under `memory_mb`. keep: any of
        "examples" (per-example loss and correctness), "probs" (softmax probabilities), "confidence"
        (the top-1 probability of each example).
        """
        k_all = next(iter(state.values())).shape[0]
        per = batch_size * self.eval_bytes_per_example(cfg)
        group = max(1, min(k_all, (memory_mb << 20) // max(per, 1)))
        n_batches = (len(examples) + batch_size - 1) // batch_size
        losses, correct, probs, labels, confs = [], [], [], [], []
        pbar = bar(total=((k_all + group - 1) // group) * n_batches, disable=not progress, desc=desc)
        for g0 in range(0, k_all, group):
            g1 = min(k_all, g0 + group)
            model = self.model_from_state(cfg, {n: t[g0:g1] for n, t in state.items()}, device).eval()
            l_g, c_g, p_g, y_g, cf_g = [], [], [], [], []
            for b0 in range(0, len(examples), batch_size):
                batch = {n: t[b0 : b0 + batch_size][None].to(device) for n, t in examples.tensors.items()}
                logits, targets = self.outputs(model, batch, None)  # [G, N, C], [1 or G, N]
                gk, n, c = logits.shape
                t = targets.expand(gk, n)
                ce = F.cross_entropy(logits.reshape(-1, c).float(), t.reshape(-1), reduction="none").view(gk, n)
                l_g.append(ce.cpu())
                c_g.append((logits.argmax(-1) == t).cpu())
                if "probs" in keep:
                    p_g.append(logits.float().softmax(-1).cpu())
                if "confidence" in keep:
                    cf_g.append(logits.float().softmax(-1).max(-1).values.cpu())
                if g0 == 0:
                    y_g.append(targets[0].cpu())
                pbar.update(1)
            losses.append(torch.cat(l_g, 1))
            correct.append(torch.cat(c_g, 1))
            if p_g:
                probs.append(torch.cat(p_g, 1))
            if cf_g:
                confs.append(torch.cat(cf_g, 1))
            if y_g:
                labels = torch.cat(y_g)
        pbar.close()
        loss = torch.cat(losses).double()
        corr = torch.cat(correct)
        res = EvalResult(loss=loss.mean(1).numpy(), accuracy=corr.double().mean(1).numpy(), tokens=loss.shape[1])
        if "examples" in keep:
            res.per_example_loss = loss.float().numpy()
            res.per_example_correct = corr.numpy()
            res.labels = np.asarray(labels)
        if probs:
            res.probs = torch.cat(probs).numpy()
            res.labels = np.asarray(labels)
        if confs:
            res.confidence = torch.cat(confs).numpy()
        return res


def sampled_labels(logits: torch.Tensor, seeds: list[int], steps: list[int]) -> torch.Tensor:
    """Labels drawn from each copy's own predictive distribution softmax(logits) [K, N, C] -> [K, N], by the
    Gumbel-max trick on counter-based uniforms: a pure function of (seed, step), independent of K."""
    keys = torch.tensor([rng.signed(rng.mix(s, t, FISHER_SITE)) for s, t in zip(seeds, steps)],
                        dtype=torch.int64, device=logits.device)
    u = rng.uniform(keys, FISHER_SITE, tuple(logits.shape[1:])).clamp_(1e-7, 1 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    return (logits.detach().float() + gumbel).argmax(-1)


def fisher_penalty(family: Family, model, batch: dict[str, torch.Tensor], drop, mode: str, seeds: list[int],
                   steps: list[int], sub: int = 0) -> torch.Tensor:
    """Per-copy ||grad of the mean batch cross-entropy||^2 [K], differentiable (double backward).

    mode "sampled": labels drawn from the model's own prediction — an estimate of the trace of the
    Fisher information (Jastrzebski et al. 2021, the grokking notebook of study 5); "empirical": the
    true labels (the gradient-norm penalty of study 5's MNIST notebook). sub > 0: on the first `sub`
    examples of the batch only.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if sub:
        batch = {n: t[:, :sub].contiguous() for n, t in batch.items()}
    with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU kernels have no double backward
        logits, targets = family.outputs(model, batch, drop)
    k, n, c = logits.shape
    y = sampled_labels(logits, seeds, steps) if mode == "sampled" else targets.expand(k, n)
    ce = F.cross_entropy(logits.reshape(-1, c).float(), y.reshape(-1), reduction="none").view(k, n).mean(1)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(ce.sum(), params, create_graph=True)  # copy k's slice depends on copy k alone
    return sum((g.reshape(k, -1).float() ** 2).sum(1) for g in grads)
