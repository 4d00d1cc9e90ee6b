"""linear_path for lmc_core's own models (K=1 models of a registered family): all alphas as one K-copy ensemble."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.batches import Examples
from ..data.hf_batches import is_hf_batch, is_peft, lm_examples
from ..families import family_of
from ..models.adapters import LoRALinear
from .interpolate import interpolation_curve


def family_examples(fam, cfg, data, where: str):
    """A split in the family's format: what its eval_examples take, or (x, y, ...) tensors / a DataLoader of such
    batches mapped onto the names of the family's example tensors (e.g. x, y for the MLP)."""
    if isinstance(data, Examples) or (isinstance(data, torch.Tensor) and data.dim() == 1):
        return data
    if not isinstance(data, (torch.Tensor, tuple, list, Mapping, str)):
        try:
            data = list(data)  # a DataLoader or generator of batches: read once, here
        except TypeError:
            pass  # not iterable: said below
    hf = is_hf_batch(data) or (isinstance(data, (list, tuple)) and bool(data) and all(map(is_hf_batch, data)))
    if fam.name == "lm" and hf:
        return lm_examples(data, cfg.context, cfg.vocab_size, where)  # each sequence on its own, padding excluded
    if is_hf_batch(data):  # another family: its own example names (an encoder's input_ids, attention_mask, ...)
        names = list(fam.example().examples.tensors)
        given = {**({"token_type_ids": torch.zeros_like(data["input_ids"])} if "token_type_ids" in names else {}),
                 **data}
        missing = sorted(set(names) - set(given))
        if missing or set(given) - set(names):
            raise ValueError(f"{where}: the {fam.name!r} family's examples are ({', '.join(names)}); the batch has "
                             f"({', '.join(data)})")
        return Examples(**{n: given[n] for n in names})
    if not isinstance(data, tuple):
        try:
            parts = [b if isinstance(b, (tuple, list)) else (b,) for b in data]
        except TypeError:
            raise TypeError(f"{where}: give the {fam.name!r} family's data (Examples, a token tensor for a language "
                            f"model) or (x, y) tensors") from None
        data = tuple(torch.cat(col) for col in zip(*parts))
    names = list(fam.example().examples.tensors)
    if len(data) != len(names):
        raise ValueError(f"{where}: the {fam.name!r} family's examples are ({', '.join(names)}); got a tuple of "
                         f"{len(data)} tensors")
    return Examples(**dict(zip(names, data)))


LORA_PATHS = ("merged", "factors")


@torch.no_grad()
def merge_lora(model: nn.Module, state: dict) -> tuple[dict, list[str]]:
    """`state` with every LoRA layer of `model` merged: weight W + (alpha/r) A B (Hu et al. 2021, eq. 3), B zero, so
    that the same model computes the same function and a straight line between two merged states is the straight
    line between the adapted weights; and the merged layers' names."""
    out, names = dict(state), []
    for name, m in model.named_modules():
        if isinstance(m, LoRALinear):
            p = f"{name}." if name else ""
            out[p + "weight"] = torch.baddbmm(state[p + "weight"], state[p + "lora_a"], state[p + "lora_b"],
                                              alpha=m.scale)
            out[p + "lora_b"] = torch.zeros_like(state[p + "lora_b"])
            names.append(name)
    return out, names


@torch.no_grad()
def peft_pair(model_a, model_b, lora: str) -> tuple:
    """(model_a, model_b, notes) for the generic path: two peft models merged into their base models' class
    (copies: W + scaling * B A in every adapted layer, peft's merge_and_unload) when lora="merged", left as they are
    (their adapter factors interpolated each) when lora="factors"; models that are not peft models pass through.
    ValueError when only one of the two is a peft model."""
    if not (is_peft(model_a) or is_peft(model_b)):
        return model_a, model_b, []
    if not (is_peft(model_a) and is_peft(model_b)):
        raise ValueError("model_a and model_b must both be peft models or neither (merge one with "
                         "merge_and_unload() first)")
    if lora == "factors":
        return model_a, model_b, ["peft adapters: their factors (LoRA's A and B) are interpolated each, so the "
                                  "adapted weights follow a curve, not a straight line (lora='merged' for it)"]
    merged = [copy.deepcopy(m).merge_and_unload().eval() for m in (model_a, model_b)]
    return (*merged, ["peft adapters merged (merge_and_unload on copies): the path runs between the adapted "
                      "weights W + scaling * B A (lora='factors' interpolates the factors each instead)"])


def family_curve(cfg, model_a, model_b, splits: dict, alphas: np.ndarray, batch_size: int, device,
                 lora: str = "merged") -> tuple[pd.DataFrame, list[str], str]:
    """(curve, notes, mode) of the path between two K=1 family models (lora: "merged" or "factors", linear_path)."""
    fam = family_of(cfg)
    if model_b.cfg != cfg:
        raise ValueError("model_a and model_b have different configs: a linear path needs one architecture")
    dev = device or next(model_a.parameters()).device
    a = {n: t.detach() for n, t in model_a.state_dict().items()}
    b = {n: t.detach() for n, t in model_b.state_dict().items()}
    lora_notes = []
    if lora == "merged":
        (a, merged), (b, _) = merge_lora(model_a, a), merge_lora(model_b, b)
        if merged:
            lora_notes.append(f"LoRA merged: the path runs between the adapted weights W + (alpha/r) A B of its "
                              f"{len(merged)} LoRA layers (lora='factors' interpolates A and B each instead)")
    elif any(isinstance(m, LoRALinear) for m in model_a.modules()):
        lora_notes.append("LoRA factors: A and B are interpolated each, so the adapted weights W + (alpha/r) A B "
                          "follow a curve, not a straight line (lora='merged' for the straight line)")
    data = {s: family_examples(fam, cfg, d, f"data[{s!r}]") for s, d in splits.items()}
    curve = interpolation_curve(cfg, a, b, data, alphas, batch_size=batch_size, device=dev)
    curve = curve.rename(columns={"tokens": "examples"})
    notes = [f"an lmc_core {fam.name!r} model: all {len(alphas)} alphas evaluated as one {len(alphas)}-copy ensemble "
             "by its family (tied weights are one parameter, interpolated once; fixed tables such as a sinusoidal "
             "position table are rebuilt from the config, never interpolated)", *lora_notes]
    read = {getattr(m, "checkpoint_dtype", torch.float32) for m in (model_a, model_b)} - {torch.float32}
    if read:
        notes.append(f"read by load_hf from {'/'.join(sorted(str(d)[6:] for d in read))} checkpoints and evaluated in "
                     "float32 (their values exactly); pass the transformers objects to evaluate in their own precision")
    return curve[["split", "alpha", "loss", "error", "examples"]], notes, "family ensemble"
