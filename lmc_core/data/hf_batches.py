"""Batches the way Hugging Face users hold them — dicts of `input_ids` / `attention_mask` / `labels` — evaluated per
sequence, padding excluded, the same on every route of `linear_path` (issue 28, item 3).

A causal language model predicts token t + 1 at position t. Hugging Face's causal-LM classes take `labels` equal to
`input_ids` and shift them inside the model; `next_token_labels` writes that shift out, so that each position's
logits meet their own target: the target of the last position, of a position whose next token is padding
(`attention_mask` 0), of a padding position itself and of a label -100 is IGNORE_INDEX, counted in neither loss nor
error — unlike transformers' own loss, which counts padding unless its labels are -100. Every mean is over
the counted targets of the whole split (token-weighted, as the model's own loss over one batch).

Two routes read these batches:
- a transformers causal LM object (`GPT2LMHeadModel`, `OPTForCausalLM`, `*ForCausalLM`) through the generic
  `nn.Module` route: the batch's labels are replaced by `next_token_labels` (paths.linear_path says so in its notes);
- an lmc_core language model (from `load_hf`) through its family: `lm_examples` turns the batches into windows
  [N, L] of each sequence on its own (no window crosses a sequence boundary) with their targets [N, L - 1].
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable

import torch

from .batches import IGNORE_INDEX, Examples

LABEL_KEY = "labels"
TOKENS_KEY = "input_ids"
MASK_KEY = "attention_mask"


def is_hf_batch(obj: Any) -> bool:
    """True for one batch the Hugging Face way: a mapping of tensors with `input_ids` (a dict, or the BatchEncoding
    a tokenizer or DataCollatorWithPadding returns)."""
    return isinstance(obj, Mapping) and TOKENS_KEY in obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def is_peft(model: Any) -> bool:
    """True for a `peft` model (a PeftModel: LoRA or another adapter around a base model), told without importing
    peft."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload") and hasattr(model, "get_base_model")


def is_causal_lm(model: Any) -> bool:
    """True for a transformers causal language model object (its class ends in ForCausalLM or LMHeadModel), also
    inside a peft model."""
    if is_peft(model):
        model = model.get_base_model()
    return isinstance(getattr(getattr(model, "config", None), "model_type", None), str) and \
        type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


def next_token_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      labels: torch.Tensor | None = None, where: str = "data") -> torch.Tensor:
    """The target of every position's logits [N, L]: labels (default input_ids) shifted left by one, IGNORE_INDEX at
    the last position, at padding (attention_mask 0: left padding too), where the next token is padding and where
    the label is IGNORE_INDEX.
    ValueError naming `where` for tensors of other shapes than input_ids [N, L]."""
    if input_ids.dim() != 2:
        raise ValueError(f"{where}: input_ids must be [batch, length]; got shape {tuple(input_ids.shape)}")
    y = (input_ids if labels is None else labels).clone()
    for name, t in ((LABEL_KEY, labels), (MASK_KEY, attention_mask)):
        if t is not None and t.shape != input_ids.shape:
            raise ValueError(f"{where}: {name} {tuple(t.shape)} must have input_ids' shape {tuple(input_ids.shape)}")
    if attention_mask is not None:
        y[attention_mask == 0] = IGNORE_INDEX
    out = torch.full_like(y, IGNORE_INDEX)
    out[:, :-1] = y[:, 1:]
    if attention_mask is not None:
        out[attention_mask == 0] = IGNORE_INDEX  # a padding position predicts nothing
    return out


def _right_padded(mask: torch.Tensor, where: str) -> None:
    """ValueError naming `where` unless every row of the mask is ones then zeros (right padding)."""
    m = mask != 0
    if bool((m[:, 1:] & ~m[:, :-1]).any()):
        row = int((m[:, 1:] & ~m[:, :-1]).any(1).nonzero()[0])
        raise ValueError(f"{where}: attention_mask row {row} is not right-padded (a 0 before a 1): an lmc_core "
                         "language model numbers positions from the first token, so give right-padded batches "
                         "(tokenizer.padding_side = 'right')")


def lm_examples(data: dict | Iterable[dict], context: int, vocab_size: int, where: str = "data") -> Examples:
    """Examples(tokens [N, L], targets [N, L - 1]) of a language model from one Hugging Face batch or an iterable of
    them (a DataLoader, a list): each sequence a window of its own, right-padded to the longest (padding is token
    0 and never a target). ValueError naming `where` for a sequence longer than context + 1 tokens, a left-padded
    row, token ids outside [0, vocab_size) at counted positions, or batches without input_ids."""
    parts = [dict(data)] if isinstance(data, Mapping) else [dict(b) if isinstance(b, Mapping) else b for b in data]
    if not parts or not all(is_hf_batch(b) for b in parts):
        raise ValueError(f"{where}: give Hugging Face batches (dicts with input_ids, and optionally attention_mask "
                         "and labels), one or an iterable of them")
    length = max(b[TOKENS_KEY].shape[1] for b in parts)
    if length - 1 > context:
        raise ValueError(f"{where}: sequences of {length} tokens need a context of {length - 1} positions; the model "
                         f"has {context}: truncate them (tokenizer(..., max_length={context + 1}, truncation=True)) "
                         "or load the model with a larger context")
    tokens, targets = [], []
    for j, b in enumerate(parts):
        ids, mask = b[TOKENS_KEY], b.get(MASK_KEY)
        if mask is not None:
            _right_padded(mask, f"{where} (batch {j})")
        y = next_token_labels(ids, mask, b.get(LABEL_KEY), f"{where} (batch {j})")
        ids = ids if mask is None else ids.masked_fill(mask == 0, 0)
        pad = length - ids.shape[1]
        tokens.append(torch.nn.functional.pad(ids.long(), (0, pad)))
        targets.append(torch.nn.functional.pad(y[:, :-1].long(), (0, pad), value=IGNORE_INDEX))
    tokens, targets = torch.cat(tokens), torch.cat(targets)
    counted = targets[targets != IGNORE_INDEX]
    for name, t in (("input_ids", tokens), ("labels", counted)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab_size):
            raise ValueError(f"{where}: {name} run from {int(t.min())} to {int(t.max())}; the model's vocabulary is "
                             f"[0, {vocab_size})")
    if not counted.numel():
        raise ValueError(f"{where}: no position has a target (every next token is padding or -100)")
    return Examples(tokens=tokens, targets=targets)
