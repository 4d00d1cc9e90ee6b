"""Permutation alignment of two models of any architecture (Git Re-Basin, Ainsworth et al. 2023): B's hidden units
reordered to match A's, returned as an ordinary module that computes exactly what B computes.

The spec comes from the model's family (lmc_core's own models), from the caller (`spec=`: a PermutationSpec or an
align.auto.ModuleSpec) or from torch.fx (`align.auto.auto_spec`). Before it is used, every spec is checked on
model A (align.check.check_spec: a random permutation must leave the outputs on the sample unchanged; the largest
change is reported, a failing spec refused naming its parameters), and both models' weights must be finite.

Before any work the arguments are checked: `seed` an integer, `max_sweeps` >= 1, the sample non-empty, finite and
accepted by model A (its outputs finite), else a ValueError naming the argument. Tied parameters (one tensor under
several names, e.g. input and output embeddings) are matched and permuted once, under their first name, and stay
tied in the result; a spec that permutes the names of one tied tensor differently is refused (SpecError naming them).
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.fx
from torch import nn

from ..domains import MAX_SEED, MAX_STEPS
from ..align import PermutationSpec, activation_matching, apply_permutation, match_weights
from ..align.auto import HAND, ModuleSpec, UnsupportedModelError, auto_spec, tied_names
from ..align.hf_specs import CLASSES, hf_module_spec
from ..data.hf_batches import is_peft
from ..align.methods import ALIASES
from ..align.check import SpecError, check_finite, check_spec
from ..align.spec import HeadGroup
from ..config import check_choice, check_int
from . import path_data as D
from .alignment_result import Alignment
from .paths import check_pair, eval_mode, family_config

METHODS = tuple(ALIASES)  # align.methods: "weight" -> weight matching (best of RESTARTS orders), "activation"


def _inputs(sample) -> tuple[tuple, dict]:
    b = D.parse_batch(sample, "sample")
    return b.args, b.kwargs


def _named_inputs(sample, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(how the caller names it, value) of every input of the sample: sample, sample[0] or sample['key']."""
    if isinstance(sample, torch.Tensor):
        return [("sample", sample)]
    if kwargs:
        return [(f"sample[{k!r}]", v) for k, v in kwargs.items()]
    return [(f"sample[{i}]", v) for i, v in enumerate(args)]


def _check_sample(named: list[tuple[str, Any]]) -> None:
    """Raise ValueError naming the input when a tensor of the sample is empty or holds NaN / infinite values."""
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            continue
        if t.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(t.shape)}): the sample must hold at least one example "
                             "(the spec is checked and activations are read on it)")
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            raise ValueError(f"{name} is not finite ({n_nan} NaN, {n_inf} infinite of {t.numel()} values): give a "
                             "sample of finite inputs")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _run_sample(model: nn.Module, which: str, args: tuple, kwargs: dict) -> None:
    """Run `model` once on the sample (eval mode, no grad): ValueError naming `sample` when the model cannot take it
    (a wrong width, dtype or range), or naming the model when its outputs are empty or not finite."""
    try:
        with eval_mode(model), torch.no_grad():
            out = model(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass is a sample the model cannot take
        raise ValueError(f"sample: {which} cannot run on it ({_first_line(exc)}); give one batch of the model's own "
                         "inputs (the shapes, dtype and value range its forward() takes)") from None
    out = D.logits_of(out)
    if out.numel() == 0:
        raise ValueError(f"sample: {which} returns an empty output on it (shape {tuple(out.shape)}): give a sample "
                         "with at least one example")
    if (out.is_floating_point() or out.is_complex()) and not bool(torch.isfinite(out).all()):
        raise ValueError(f"{which}'s outputs on the sample are not finite although its weights are (an overflow?): "
                         "give a sample of the model's usual scale")


def _untie_spec(ms: ModuleSpec, ties: dict[str, str]) -> ModuleSpec:
    """The spec acting on each tied tensor once, under its first name: places of an alias move to that name.
    SpecError when two names of one tensor are permuted differently (no permutation can respect the tie)."""
    if not ties:
        return ms
    places: dict[str, set] = {}
    for flat, _, axes in ms.spec.flat_groups():
        for ax in axes:
            places.setdefault(ax.param, set()).add((flat, ax.axis, ax.offset, ax.repeat, ax.block))
    for canon in sorted(set(ties.values())):
        names = [canon] + sorted(a for a, c in ties.items() if c == canon)
        used = {n: places[n] for n in names if places.get(n)}
        if len({frozenset(v) for v in used.values()}) > 1:
            what = "; ".join(f"{n!r}: " + (", ".join(f"{f!r} axis {a}" + (f" offset {o}" if o else "")
                                                     + (f" repeated {r}x" if r > 1 else "")
                                                     for f, a, o, r, _ in sorted(used[n])) if n in used else "nothing")
                             for n in names)
            raise SpecError(f"tied parameters {names} (one tensor under {len(names)} names) are permuted differently "
                            f"by the spec ({what}): a permutation can respect the tie only if every name is permuted "
                            "alike. List the same groups and axes for every name (or only the first name), or untie "
                            "the weights.")

    def canon_axes(axes):
        out = []
        for ax in axes:
            c = dataclasses.replace(ax, param=ties.get(ax.param, ax.param))
            if c not in out:
                out.append(c)
        return tuple(out)

    groups = []
    for g in ms.spec.groups:
        if isinstance(g, HeadGroup):
            groups.append(dataclasses.replace(g, qk=canon_axes(g.qk), vo=canon_axes(g.vo)))
        else:
            groups.append(dataclasses.replace(g, axes=canon_axes(g.axes)))
    views = {ties.get(n, n): v for n, v in sorted(ms.views.items(), key=lambda kv: kv[0] in ties, reverse=True)}
    return ModuleSpec(type(ms.spec)(tuple(groups), ms.spec.notes), views, ms.sites, ms.graph, dict(ties))


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


LOAD_HF_TYPES = ("opt", "bert", "roberta")  # model types load_hf converts into a family (GPT-2 objects: hf_specs)


def _hugging_face_route(model: nn.Module) -> None:
    """UnsupportedModelError before any tracing for a transformers model object (torch.fx cannot follow attention):
    load_hf's route for the types it converts, a hand-written spec for the others."""
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if not isinstance(kind, str):
        return
    name = type(model).__name__
    if hf_module_spec(model) is not None:
        return  # followed by its structure (hf_specs)
    if kind in LOAD_HF_TYPES:
        raise UnsupportedModelError(f"{name} is a Hugging Face {kind!r} model, which torch.fx cannot follow through "
                                    "attention: convert both models with lmc_core.load_hf(model) (OPT, BERT, "
                                    "RoBERTa; outputs checked against transformers) and align those, whose family "
                                    "permutes heads, MLP units and the residual stream; or " + HAND)
    raise UnsupportedModelError(f"{name} is a Hugging Face {kind!r} model lmc_core does not follow (it follows "
                                f"{', '.join(CLASSES)}; load_hf converts {', '.join(LOAD_HF_TYPES)}); " + HAND)


def _as_module_spec(spec, model_a: nn.Module, sample) -> ModuleSpec:
    if spec is None:
        found = hf_module_spec(model_a)  # a transformers object whose blocks are followed: by their structure
        if found is not None:
            return found
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
    seed: any integer (the check's random permutation and weight matching's sweep orders); max_sweeps: an integer
    >= 1, weight matching's sweeps per restart. Tied parameters are matched and permuted once and stay tied. Two
    peft LoRA models are matched on their merged weights and B's base and adapter factors permuted together
    (lmc_core.analysis.peft_align): the model returned is B's PeftModel, same function.
    Raises NonFiniteWeightsError (model and parameter named) for NaN/infinite weights, UnsupportedModelError when
    auto_spec cannot follow the model, SpecError when the spec changes A's outputs (its groups and parameters
    named) or permutes two names of one tied tensor differently, ConfigError (a ValueError) for a bad method, seed or
    max_sweeps, ValueError for two different architectures (or ties) and for a sample that is empty, not finite or
    not accepted by model A — all before any matching.
    """
    check_choice("method", method, METHODS)
    seed = check_int("seed", seed, 0, MAX_SEED)
    max_sweeps = check_int("max_sweeps", max_sweeps, 1, MAX_STEPS)
    check_pair(model_a, model_b)
    if is_peft(model_a) or is_peft(model_b):
        from .peft_align import peft_alignment

        return peft_alignment(model_a, model_b, sample, align_models, _inputs, method=method, spec=spec, seed=seed,
                              max_sweeps=max_sweeps)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    check_finite(sd_a, "model_a")
    check_finite(sd_b, "model_b")
    cfg = family_config(model_a)
    if cfg is not None:
        from .family_align import family_alignment

        inputs = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
        if isinstance(inputs, torch.Tensor):  # anything else: family_alignment says what the family takes
            _check_sample([("sample" if inputs is sample else "sample[0]", inputs)])
            _run_sample(model_a, "model_a", (inputs[None],), {})
        return family_alignment(cfg, model_a, model_b, sample, method, seed, max_sweeps,
                                spec.spec if isinstance(spec, ModuleSpec) else spec)
    args, kwargs = _inputs(sample)
    _check_sample(_named_inputs(sample, args, kwargs))
    ties = tied_names(model_a)
    if tied_names(model_b) != ties:
        raise ValueError(f"model_a and model_b tie different parameters (model_a: {ties or 'none'}; model_b: "
                         f"{tied_names(model_b) or 'none'}): alignment needs one architecture")
    if spec is None:
        _hugging_face_route(model_a)  # a transformers object whose blocks are not followed: say so before running it
    _run_sample(model_a, "model_a", args, kwargs)
    ms = _untie_spec(_as_module_spec(spec, model_a, sample), ties)
    sd_a = {n: t for n, t in sd_a.items() if n not in ties}  # a tied tensor once, under its first name
    sd_b = {n: t for n, t in sd_b.items() if n not in ties}
    a, b = ms.stacked(sd_a), ms.stacked(sd_b)

    def forward(model: nn.Module, like: dict):
        def run(state):
            with eval_mode(model):  # functional_call ties the aliases to their first name's value
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
    out = copy.deepcopy(model_b)  # a deep copy keeps B's ties: loading the first name sets every alias
    new = ms.unstacked(permuted, sd_b)
    out.load_state_dict({**new, **{alias: new[first] for alias, first in ties.items()}})
    return Alignment(out, perms, ms, method, log, chk, moved, list(ms.spec.notes))
