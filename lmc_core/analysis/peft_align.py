"""Alignment of two peft LoRA models (issue 28, item 4): the base model's permutations carried to its adapters.

`align_models` on two PeftModels matches their adapted models, merged (W + scaling * B A in every adapted layer:
the function each fine-tune computes, Hu et al. 2021, eq. 3), and then permutes B's peft model as a whole: every
permutation of a merged weight's output axis acts on its base weight and on the rows of lora_B (and lora_B's bias),
every permutation of its input axis on the base weight and on the columns of lora_A. Since
P_out (W + s B A) P_in^T = P_out W P_in^T + s (P_out B)(A P_in^T), the permuted peft model merges to the permuted
merged model and computes B's function; the returned model is still a PeftModel (its factors can be interpolated,
lora="factors", or merged). The permutation leaves B's base different from A's when they shared one: a path
between A and aligned B interpolates the bases too.

Adapters other than LoRA on Linear / GPT-2 Conv1D layers (embedding LoRA, DoRA's magnitudes, modules_to_save,
IA3, prompts) are refused by name: their tensors would stay in B's unit order.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ..align import apply_permutation
from ..align.auto import ModuleSpec, UnsupportedModelError, tied_names
from ..align.check import SpecError
from ..align.spec import Axis, HeadGroup, PermutationSpec
from ..data.hf_batches import is_peft
from . import path_data as D

PREFIX = "base_model.model."  # where a PeftModel keeps its base model's modules


def _lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{module name in the merged model: peft LoRA layer} of a PeftModel; UnsupportedModelError for any adapter
    tensor these layers do not explain."""
    layers, explained, tied = {}, set(), tied_names(model)
    tied = set(tied) | set(tied.values())
    for name, m in model.named_modules():
        if hasattr(m, "lora_A") and hasattr(m, "base_layer") and name.startswith(PREFIX):
            extra = [k for k in ("lora_embedding_A", "lora_magnitude_vector") if getattr(m, k, None)]
            if extra:
                raise UnsupportedModelError(f"{name} carries {extra[0]} (embedding LoRA or DoRA): align_models "
                                            "permutes LoRA's A and B factors on Linear layers only; align the merged "
                                            "models (merge_and_unload()) instead")
            if f"{name}.base_layer.weight" in tied:
                raise UnsupportedModelError(f"{name} adapts a tied weight ({name}.base_layer.weight is one tensor "
                                            "with another layer's): merging writes into the shared tensor; align the "
                                            "merged models, or untie the weights before fine-tuning")
            layers[name[len(PREFIX):]] = m
            explained.update(f"{name}.{k}" for k, _ in m.named_parameters())
    left = [n for n, _ in model.named_parameters() if n not in explained and not n.startswith(PREFIX)
            or "modules_to_save" in n or "original_module" in n]
    left += [n for n, _ in model.named_parameters() if n.startswith(PREFIX) and n not in explained
             and any(k in n for k in ("lora_", "ia3_", "prompt", "adapter"))]
    if left:
        raise UnsupportedModelError(f"the peft model holds {left[0]!r}, which align_models does not know how to "
                                    "permute (LoRA factors on Linear layers only); align the merged models "
                                    "(merge_and_unload()) instead")
    return layers


def _places(ax: Axis, layers: dict[str, nn.Module]) -> list[Axis]:
    """The places in the PeftModel's state of one place of the merged model's spec."""
    module, _, leaf = ax.param.rpartition(".")
    lay = layers.get(module)
    if lay is None:
        return [dataclasses.replace(ax, param=PREFIX + ax.param)]
    p = f"{PREFIX}{module}."
    out = [dataclasses.replace(ax, param=f"{p}base_layer.{leaf}")]
    out_axis = 2 if getattr(lay, "fan_in_fan_out", False) else 1  # GPT-2's Conv1D keeps [in, out]
    for name in lay.lora_A:
        if leaf == "bias" or ax.axis == out_axis:  # the layer's outputs: lora_B's rows (and its bias)
            out.append(dataclasses.replace(ax, param=f"{p}lora_B.{name}.weight", axis=1))
            if getattr(lay.lora_B[name], "bias", None) is not None:
                out.append(dataclasses.replace(ax, param=f"{p}lora_B.{name}.bias", axis=1))
        else:  # its inputs: lora_A's columns
            out.append(dataclasses.replace(ax, param=f"{p}lora_A.{name}.weight", axis=2))
    return out


def peft_spec(ms: ModuleSpec, model: nn.Module) -> ModuleSpec:
    """The merged model's spec `ms` acting on the PeftModel `model`'s state (same groups, same permutations)."""
    layers = _lora_layers(model)
    if any(v for v in ms.views.values()):
        raise UnsupportedModelError("the merged models' spec views a weight in another shape (a Linear after a "
                                    "flatten), which LoRA's factors do not share; align the merged models instead")
    ties = tied_names(model)
    canon = lambda axes: tuple(dict.fromkeys(dataclasses.replace(a, param=ties.get(a.param, a.param))  # noqa: E731
                                             for ax in axes for a in _places(ax, layers)))
    groups = [dataclasses.replace(g, qk=canon(g.qk), vo=canon(g.vo)) if isinstance(g, HeadGroup)
              else dataclasses.replace(g, axes=canon(g.axes)) for g in ms.spec.groups]
    notes = (*ms.spec.notes, "peft LoRA: B's base weights and adapter factors permuted together (lora_B's rows with "
             "a layer's outputs, lora_A's columns with its inputs), so B's peft model computes B's function")
    return ModuleSpec(PermutationSpec(tuple(groups), notes), {}, {}, None, ties)


def peft_alignment(model_a: nn.Module, model_b: nn.Module, sample, align, inputs, **kwargs):
    """align(merged A, merged B, sample, **kwargs), with B's PeftModel permuted as its merged model was (the
    Alignment's model is a PeftModel, its spec peft_spec's); inputs(sample) -> (args, kwargs) of the model.
    ValueError unless both are peft models; UnsupportedModelError for adapters other than LoRA on Linear layers."""
    if not (is_peft(model_a) and is_peft(model_b)):
        raise ValueError("model_a and model_b must both be peft models or neither (merge one with "
                         "merge_and_unload() first)")
    merged = [copy.deepcopy(m).merge_and_unload().eval() for m in (model_a, model_b)]
    _lora_layers(model_b)  # an adapter we cannot permute: refused before any matching
    al = align(merged[0], merged[1], sample, **kwargs)
    spec_b = peft_spec(al.spec, model_b)
    sd = model_b.state_dict()
    own = {n: t for n, t in sd.items() if n not in spec_b.ties}
    permuted = spec_b.unstacked(apply_permutation(spec_b.stacked(own), spec_b.spec, al.perms), sd)
    out = copy.deepcopy(model_b)
    out.load_state_dict(permuted)
    args, kw = inputs(sample)
    with torch.no_grad():
        ref, new = (D.logits_of(m.eval()(*args, **kw)) for m in (model_b, out))
    moved = float((new.double() - ref.double()).abs().max())
    if not moved <= max(al.check.tolerance, 1e-5 + 1e-4 * float(ref.abs().max())):  # the spec check's tolerance
        raise SpecError(f"permuting B's peft model as its merged model changed B's outputs by {moved:.2e}: an adapter "
                        "tensor is not where its layer's units are (align the merged models instead)")
    return dataclasses.replace(al, model=out, spec=spec_b, max_diff_b=max(al.max_diff_b, moved),
                               notes=[*al.notes, spec_b.spec.notes[-1]])

