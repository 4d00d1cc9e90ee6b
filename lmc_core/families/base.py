"""The Family seam: what the trainer, the run store, interpolation, alignment and evaluation need to know
about a model family, and nothing else.

A family turns its config into a stacked K-copy model (`build`, `init`), its data into `Examples`
(`train_examples`, `eval_examples`), a batch into logits and targets (`outputs`; the per-copy mean
loss `loss` is the cross-entropy of those), and a stacked state into per-example results
(`evaluate`). It also says which parameters are interpolated in each tuning mode, which are task
heads (kept per endpoint), and, as optional abilities, how its hidden units may be permuted
(`perm_spec`), which activations activation matching compares (`activations`) and which hidden
units sparsity counts (`hidden_units`). The stacked state — a dict of tensors with the copy axis
first — is the one currency between all of them.

The model a family builds follows the `StackedModel` contract below; `ensemble.extract`/`stack`
and the run store rely on nothing else.

Adding a family: a model module in `lmc_core/models/`, a family module here (a `Family` subclass
with the abstract methods filled in), a data module in `lmc_core/data/` if the data are new, and
one line in `registry.FAMILIES`. The contract test (tests/unit/test_family_contract.py) then
checks it without anyone editing a test.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from ..capped import EVALUATION, Timer, cap_steps
from ..align.activation_matching import Features
from ..data.batches import IGNORE_INDEX, Examples
from ..progress import bar

if TYPE_CHECKING:
    from ..align.orthogonal import ResidualSpec
    from ..align.spec import PermutationSpec
    from ..nn import DropoutSource

State = dict[str, torch.Tensor]
ABILITIES = ("perm_spec", "activations", "hidden_units", "residual_maps")


class FamilyAbilityError(NotImplementedError):
    """A family was asked for an optional ability it does not have (the message names both)."""


@runtime_checkable
class StackedModel(Protocol):
    """What lmc_core needs of a family's model: K copies held as one `torch.nn.Module`.

    - `k`: the number of copies; every parameter and persistent buffer has the copy axis first, [K, ...];
    - `cfg`: the config it was built from (`family_of(model.cfg)` finds the family again);
    - `init_weights(seeds)`: initialise copy k from init seed seeds[k] in place and return the model;
      copies with equal seeds are identical and copy k does not depend on K;
    - `state_dict()` / `load_state_dict(state)`: the stacked state, as any module has;
    - its forward pass (called only through `Family.outputs`) takes `drop: DropoutSource | None`, the
      per-copy dropout masks (None in evaluation).
    """

    k: int
    cfg: Any

    def init_weights(self, seeds: list[int]) -> "StackedModel": ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...


class _LossOf(torch.nn.Module):
    """A module whose forward is a family's loss of the model it holds (for torch.func.functional_call)."""

    def __init__(self, family: "Family", model: torch.nn.Module):
        super().__init__()
        self.family, self.model = family, model

    def forward(self, batch: dict) -> torch.Tensor:
        return self.family.loss(self.model, batch, None)


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


@dataclass(frozen=True)
class FamilyExample:
    """A tiny configuration of a family and a few examples in its format: what the contract tests and the
    checks of a family (a permutation spec keeps the function, endpoints reproduce the models) run on."""

    cfg: Any  # the family's model config, small enough for a test
    data: Any  # a data config of the family (only its identity matters: the examples are given)
    examples: Examples  # a handful of training/evaluation examples for cfg
    inputs: torch.Tensor | None = None  # the model inputs of those examples, as activations/hidden_units take them


class Family(abc.ABC):
    """Base class of a model family (see the module docstring).

    Subclasses set `name`, `config_type`, `data_type` (and `metrics`) and implement the abstract
    methods; the optional abilities in ABILITIES raise FamilyAbilityError unless overridden
    (`supports(ability)` says which a family has).
    """

    name: str = ""
    config_type: type = object
    data_type: type = object
    metrics: tuple[str, ...] = ("loss", "error")

    # --- model
    @abc.abstractmethod
    def build(self, cfg, k: int) -> StackedModel:
        """A K-copy model (uninitialised)."""

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

    def complete_state(self, cfg, init_seeds: list[int], state: State, names: set[str] | None = None) -> State:
        """`state` with the parameters it lacks (frozen ones, which the store does not keep) taken from the
        initialisation of copies with these init seeds; the family's initialisation when `state` is empty.
        names: the model's state keys, when the caller has the model already."""
        if state and names is None:
            names = set(self.build(cfg, 1).state_dict())
        missing = (names or set()) - set(state)
        if state and not missing:
            return state
        init = self.init(cfg, list(init_seeds))
        return {n: (state[n] if n in state else init[n]) for n in init}

    def dropout(self, cfg) -> float:
        """Dropout probability of the model (0: no dropout masks are drawn)."""
        return float(getattr(cfg, "dropout", 0.0))

    @abc.abstractmethod
    def example(self) -> FamilyExample:
        """A tiny config, a data config and a few examples (deterministic): what checks of the family use."""

    @abc.abstractmethod
    def n_classes(self, cfg) -> int:
        """Number of output classes (vocabulary size for a language model)."""

    def chance_loss(self, cfg) -> float:
        """Cross-entropy of a uniform guess, ln C (divergence is judged against it)."""
        return math.log(self.n_classes(cfg))

    # --- data
    @abc.abstractmethod
    def train_examples(self, spec, source) -> Examples:
        """Training examples from the family's data source (checked against the model)."""

    @abc.abstractmethod
    def eval_examples(self, cfg, source, limit: int | None = None) -> Examples:
        """Evaluation examples of one split (the first `limit` examples, or tokens for an LM)."""

    # --- computation
    @abc.abstractmethod
    def outputs(self, model, batch: dict[str, torch.Tensor], drop: "DropoutSource | None" = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [K, N, C], targets [K or 1, N]) of a batch whose tensors are [K or 1, B, ...]."""

    # whether loss(..., fused=True) is available (TrainConfig.fused_cross_entropy)
    fused_cross_entropy = False

    def loss(self, model, batch: dict[str, torch.Tensor], drop=None, budget_mb: float | None = None,
             fused: bool = False) -> torch.Tensor:
        """Mean training loss of each copy [K] (the sum over copies is what is minimised); fused: the
        output layer and loss as one operation (TrainConfig.fused_cross_entropy; families with
        `fused_cross_entropy = True` only)."""
        self.check_fused(fused)
        logits, targets = self.outputs(model, batch, drop)
        k, n, c = logits.shape
        ce = F.cross_entropy(logits.reshape(-1, c).float(), targets.expand(k, n).reshape(-1), reduction="none")
        return ce.view(k, n).mean(1)

    def check_fused(self, fused: bool) -> None:
        """Raise ValueError if `fused` is asked of a family without a fused loss."""
        if fused and not self.fused_cross_entropy:
            raise ValueError(f"fused_cross_entropy=True: the {type(self).__name__} family has no fused loss; set "
                             "TrainConfig(fused_cross_entropy=False)")

    def eval_bytes_per_example(self, cfg) -> int:
        """Memory of one example's logits and softmax temporaries, for grouping copies in evaluation."""
        return self.n_classes(cfg) * 4 * 3

    def state_loss_fn(self, cfg, k: int = 1, device="cpu") -> Callable[[State, dict], torch.Tensor]:
        """A function (state, batch) -> the mean training loss [K] of the K copies of `state` on `batch` (eval mode,
        no dropout), differentiable in the state's tensors (torch.func.functional_call on one model built here):
        what learned alignment minimises at the path's midpoint."""
        wrapper = _LossOf(self, self.build(cfg, k).to(device).eval())

        def loss(state: State, batch: dict) -> torch.Tensor:
            return torch.func.functional_call(wrapper, {"model." + n: t for n, t in state.items()}, (batch,))

        return loss

    # --- what is interpolated and kept
    def interp_keys(self, cfg, state: State, mode: str = "full") -> set[str] | None:
        """Parameters interpolated in tuning mode `mode` (None: all)."""
        return None

    def head_keys(self, cfg, state: State) -> set[str]:
        """Task-head parameters (kept per endpoint when two endpoints solve different tasks)."""
        return set()

    # --- optional abilities (ABILITIES)
    def supports(self, ability: str) -> bool:
        """True if this family has the optional ability (one of ABILITIES)."""
        if ability not in ABILITIES:
            raise ValueError(f"unknown ability {ability!r}; choose one of {list(ABILITIES)}")
        return getattr(type(self), ability) is not getattr(Family, ability)

    def _lacks(self, ability: str, what: str) -> FamilyAbilityError:
        return FamilyAbilityError(f"model family {self.name!r} has no {what} ({ability}); families with it: "
                                  "see lmc_core.families.FAMILIES and Family.supports")

    def perm_spec(self, cfg) -> "PermutationSpec":
        """Permutation spec of the hidden units (lmc_core.align): which units can be permuted without changing
        the function."""
        raise self._lacks("perm_spec", "permutation symmetry")

    def activations(self, cfg, state: State, inputs: torch.Tensor, device="cpu") -> Features:
        """Activations of a single-copy (K=1) state on `inputs`, keyed like `perm_spec(cfg).flat_groups()`: what
        activation matching correlates (eval mode, no dropout)."""
        raise self._lacks("activations", "activation sites for activation matching")

    def hidden_units(self, cfg, state: State, inputs: torch.Tensor, device="cpu") -> list[torch.Tensor]:
        """Post-activation hidden units, one [K, N, h] per hidden layer (for sparsity and entropy)."""
        raise self._lacks("hidden_units", "hidden units")

    def residual_maps(self, cfg, state: State) -> "tuple[Any, State, ResidualSpec]":
        """(cfg', state', spec): the same function written so that every map of `spec.group` ("orthogonal" or
        "invertible") applied to the residual stream at spec's places keeps it exactly (lmc_core.align.orthogonal:
        `apply_residual_map`, `residual_alignment`), for a stacked state [K, ...]. A family with LayerNorm folds it
        into a gain-free RMSNorm first (SliceGPT), so cfg' may differ from cfg; perm_spec(cfg') still applies."""
        raise self._lacks("residual_maps", "residual-stream maps beyond permutations")

    # --- evaluation
    def example_losses(self, model, batch: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(per-example loss [G, N], top-1 correctness [G, N], targets [1 or G, N]) computed without holding the
        logits, where the family has a faster way than `outputs` (a large vocabulary); None: use `outputs`."""
        return None

    def evaluate(self, cfg, state: State, examples: Examples, batch_size: int = 32, device="cpu",
                 memory_mb: int = 512, keep: tuple[str, ...] = (), progress: bool = False,
                 desc: str = "eval") -> EvalResult:
        """Evaluate every copy of a stacked state (`evaluate_copies`); a capped run (lmc_core.capped) adds its wall
        time to EVALUATION, the part of the run its projection scales with the evaluation sizes."""
        if cap_steps() is None:
            return self.evaluate_copies(cfg, state, examples, batch_size, device, memory_mb, keep, progress, desc)
        with Timer() as t:
            out = self.evaluate_copies(cfg, state, examples, batch_size, device, memory_mb, keep, progress, desc)
        EVALUATION.append(t.seconds)
        return out

    @torch.no_grad()
    def evaluate_copies(self, cfg, state: State, examples: Examples, batch_size: int = 32, device="cpu",
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
                fused = None if {"probs", "confidence"} & set(keep) else self.example_losses(model, batch)
                if fused is not None:  # [G, N] each, without the logits (a large vocabulary)
                    ce, hit, targets = fused
                else:
                    logits, targets = self.outputs(model, batch, None)  # [G, N, C], [1 or G, N]
                    gk, n, c = logits.shape
                    t = targets.expand(gk, n)
                    ce = F.cross_entropy(logits.reshape(-1, c).float(), t.reshape(-1), reduction="none").view(gk, n)
                    hit = logits.argmax(-1) == t
                kept = targets[0] != IGNORE_INDEX  # the same positions in every copy (targets are the examples')
                if not bool(kept.all()):  # padding or -100 labels (Hugging Face batches): counted nowhere
                    ce, hit, targets = ce[:, kept], hit[:, kept], targets[:, kept]
                    if fused is None:
                        logits = logits[:, kept]  # for "probs" and "confidence"
                l_g.append(ce.cpu())
                c_g.append(hit.cpu())
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
