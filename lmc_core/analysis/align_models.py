"""Permutation alignment of two models of any architecture (Git Re-Basin, Ainsworth et al. 2023): B's hidden units
reordered to match A's, returned as an ordinary module that computes exactly what B computes.

The spec comes from the model's family (lmc_core's own models), from the caller (`spec=`: a PermutationSpec or an
align.auto.ModuleSpec) or from torch.fx (`align.auto.auto_spec`). Before it is used, every spec is checked on
model A (align.check.check_spec: a random permutation must leave the outputs on the sample unchanged; the largest
change is reported, a failing spec refused naming its parameters), and both models' weights must be finite.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.fx
from torch import nn

from ..align import PermutationSpec, activation_matching, apply_permutation, match_weights
from ..align.auto import ModuleSpec, auto_spec
from ..align.methods import ALIASES
from ..align.check import check_finite, check_spec
from . import path_data as D
from .alignment_result import Alignment
from .paths import check_pair, eval_mode, family_config

METHODS = tuple(ALIASES)  # align.methods: "weight" -> weight matching (best of RESTARTS orders), "activation"


def _inputs(sample) -> tuple[tuple, dict]:
    b = D.parse_batch(sample, "sample")
    return b.args, b.kwargs


def _features(ms: ModuleSpec, module_state: dict, args: tuple, kwargs: dict) -> dict[str, list[torch.Tensor]]:
    """The units of every group at its sites (fx nodes), as [rows, units] tensors."""
    gm = copy.deepcopy(ms.graph)
    gm.load_state_dict(module_state, strict=False)
    gm.eval()
    wanted = {s.node for sites in ms.sites.values() for s in sites}
    seen: dict[str, torch.Tensor] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n.name in wanted:
                seen[n.name] = out.detach()
            return out

    names = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    with torch.no_grad():
        Recorder(gm).run(*(args + tuple(kwargs[n] for n in names[len(args):] if n in kwargs)))
    out = {}
    for g in ms.spec.groups:
        if not ms.sites.get(g.name):
            raise ValueError(f"no activation site for group {g.name!r}: use method='weight'")
        feats = []
        for s in ms.sites[g.name]:
            t = seen[s.node].movedim(s.axis, -1)
            if s.block > 1:
                t = t.reshape(*t.shape[:-1], -1, s.block).movedim(-1, -2)
            feats.append(t.reshape(-1, g.size))
        out[g.name] = feats
    return out


def _as_module_spec(spec, model_a: nn.Module, sample) -> ModuleSpec:
    if spec is None:
        b = D.parse_batch(sample, "sample")
        return auto_spec(model_a, b.kwargs if b.kwargs else b.args)
    if isinstance(spec, ModuleSpec):
        return spec
    if isinstance(spec, PermutationSpec):
        return ModuleSpec(spec)
    raise TypeError(f"spec must be a PermutationSpec or an lmc_core.align.auto.ModuleSpec, got {type(spec).__name__}")


def align_models(model_a: nn.Module, model_b: nn.Module, sample: Any, method: str = "weight", spec=None,
                 seed: int = 0, max_sweeps: int = 100) -> Alignment:
    """B's hidden units permuted to match A's (weight matching or activation matching), checked first.

    sample: one batch of inputs (a tensor x, a tuple (x, y, ...) whose first element is the input, or a dict of
      keyword inputs); the spec is checked and activations are read on it. For an lmc_core family model, its
      family's inputs (token ids [B, T] for a language model, x [N, d_in] for the MLP).
    method: "weight" (Ainsworth et al. 2023, alg. 1: coordinate descent of linear assignments maximising
      <A, pi(B)>) or "activation" (one assignment per group on the correlation of the units' activations on
      the sample; sec. 3.1). spec: None (the family's, else torch.fx auto_spec), a PermutationSpec (axis 0 is the
      copy axis lmc_core adds: axis 1 is a parameter's first axis) or a ModuleSpec.
    Raises NonFiniteWeightsError (model and parameter named) for NaN/infinite weights, UnsupportedModelError when
    auto_spec cannot follow the model, SpecError when the spec changes A's outputs (its groups and parameters
    named), ValueError for two different architectures or an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; choose one of {list(METHODS)}")
    check_pair(model_a, model_b)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    check_finite(sd_a, "model_a")
    check_finite(sd_b, "model_b")
    cfg = family_config(model_a)
    if cfg is not None:
        from .family_align import family_alignment

        return family_alignment(cfg, model_a, model_b, sample, method, seed, max_sweeps,
                                spec.spec if isinstance(spec, ModuleSpec) else spec)
    args, kwargs = _inputs(sample)
    ms = _as_module_spec(spec, model_a, sample)
    a, b = ms.stacked(sd_a), ms.stacked(sd_b)

    def forward(model: nn.Module, like: dict):
        def run(state):
            with eval_mode(model):
                return D.logits_of(torch.func.functional_call(model, ms.unstacked(state, like), args, kwargs))
        return run

    chk = check_spec(ms.spec, a, forward(model_a, sd_a), seed=seed)
    if method == "weight":
        perms, log = match_weights(ms.spec, a, b, seed=seed, max_sweeps=max_sweeps)
    else:
        if ms.graph is None:
            raise ValueError("activation matching needs the activation sites of an automatic spec (auto_spec); with a "
                             "hand-written spec use method='weight'")
        perms, log = activation_matching(ms.spec, _features(ms, sd_a, args, kwargs), _features(ms, sd_b, args, kwargs))
    permuted = apply_permutation(b, ms.spec, perms)
    ref = forward(model_b, sd_b)(b)
    moved = float((forward(model_b, sd_b)(permuted).double() - ref.double()).abs().max())
    out = copy.deepcopy(model_b)
    out.load_state_dict(ms.unstacked(permuted, sd_b))
    return Alignment(out, perms, ms, method, log, chk, moved, list(ms.spec.notes))
