"""Subword tokenisers for the LM corpora: a byte-level BPE trained offline on the training split, and GPT-2's
own BPE (online only).

GPT-2's tokenizer (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", §2.2) is a
byte-level BPE (Sennrich et al. 2016): text is split into pre-tokens by GPT-2's regular expression, every byte
is one of 256 base symbols, and the most frequent adjacent pair is merged until the vocabulary is full. No
package here ships GPT-2's merge table (it is a hub download), so :func:`train_bpe` trains the same kind of
tokenizer with the `tokenizers` library (GPT-2's pre-tokenizer and byte alphabet, its `<|endoftext|>` special
token) on our own training plays; :func:`gpt2_tokenizer` loads GPT-2's real table through `transformers` when
the Hugging Face Hub is reachable and fails at once otherwise, naming the offline default.

Training is deterministic: `tokenizers`' BPE trainer ranks pairs by count and breaks ties by the pair's
symbol ids, which are assigned in sorted byte order, so the same text and vocabulary size give the same
merges in any process (tests check both). A trained tokenizer is cached in the data cache folder under a key
made of what it was derived from: the SHA-256 of the training text, the vocabulary size, the minimum pair
frequency and this module's format version; the file is written atomically.

Lines are encoded one by one and each is followed by the id of the newline token, so every line of a split
ends with exactly one line-end token (:func:`line_end_id`) and decoding the stream gives the text back byte
for byte (``decode(encode_lines(tok, lines)) == "".join(l + "\\n" for l in lines)``).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from . import hub
from .hub import DataUnavailableError

__all__ = ["ENDOFTEXT", "BPE_FORMAT", "train_bpe", "bpe_tokenizer", "gpt2_tokenizer", "encode_lines", "decode",
           "line_end_id", "merges", "vocab_tokens", "OFFLINE_BPE"]

ENDOFTEXT = "<|endoftext|>"  # GPT-2's only special token (its id 50256); ours gets id 0
BPE_FORMAT = 1  # bump when the trainer's settings change, so cached tokenizers are retrained
MIN_FREQUENCY = 2  # a pair seen once is never merged (GPT-2's tables were built the same way)
OFFLINE_BPE = ('the offline default, a byte-level BPE trained on the training plays (DataConfig(level="bpe", '
               'vocab_cap=...), notebook 07\'s tokenizer="bpe")')


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = MIN_FREQUENCY):
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts` (GPT-2's pre-tokenizer and byte alphabet, no
    prefix space, `<|endoftext|>` as id 0) with at most `vocab_size` entries (fewer when no pair occurs
    `min_frequency` times any more). Raises ValueError for a vocab_size that cannot hold the 256 bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 257:
        raise ValueError(f"vocab_size={vocab_size!r}: a byte-level BPE needs at least 257 entries (256 bytes and "
                         f"{ENDOFTEXT}); 4096 is a small vocabulary, 50257 GPT-2's")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=[ENDOFTEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _digest(lines: Sequence[str]) -> str:
    h = hashlib.sha256()
    for ln in lines:
        h.update(ln.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def bpe_tokenizer(lines: Sequence[str], vocab_size: int, cache_dir: str | os.PathLike | None = None,
                  min_frequency: int = MIN_FREQUENCY):
    """The byte-level BPE of `lines` (the training split), loaded from `cache_dir` when it was trained on the
    same text with the same settings before, else trained and cached there (atomically)."""
    key = json.dumps([_digest(lines), vocab_size, min_frequency, BPE_FORMAT])
    file = None
    if cache_dir is not None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        file = os.path.join(os.fspath(cache_dir), f"bpe-{vocab_size}-{digest}.json")
        tok = _load(file, key)
        if tok is not None:
            return tok
    tok = train_bpe(lines, vocab_size, min_frequency)
    if file is not None:
        from ..files import atomic_write  # atomic, with the user's umask

        os.makedirs(os.path.dirname(file), exist_ok=True)
        blob = json.dumps({"key": key, "tokenizer": json.loads(tok.to_str())})
        atomic_write(file, lambda tmp: open(tmp, "w", encoding="utf-8").write(blob))
    return tok


def _load(file: str, key: str):
    """The cached tokenizer in `file`, or None when it is missing, unreadable or derived from something else."""
    from tokenizers import Tokenizer

    try:
        with open(file, encoding="utf-8") as f:
            blob = json.load(f)
        if blob.get("key") != key:
            return None
        return Tokenizer.from_str(json.dumps(blob["tokenizer"]))
    except Exception:  # noqa: BLE001 - a damaged cache file is retrained (and replaced atomically)
        return None


def gpt2_tokenizer():
    """GPT-2's own byte-level BPE (50,257 entries) as a `tokenizers.Tokenizer`, through `transformers`; needs the
    Hugging Face Hub (or its local cache). Offline it fails at once with DataUnavailableError naming the offline
    default."""
    if importlib.util.find_spec("transformers") is None:
        raise DataUnavailableError(f"GPT-2's tokenizer needs `pip install transformers` and the Hugging Face Hub; "
                                   f"or use {OFFLINE_BPE}.")
    online = hub.hub_reachable()
    if not online:
        hub.force_hf_offline()  # the local cache only, no retries
    try:
        import transformers

        tok = transformers.AutoTokenizer.from_pretrained("gpt2")
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        where = "the Hub is reachable" if online else "huggingface.co is unreachable (offline) and gpt2 is not cached"
        raise DataUnavailableError(f"could not load GPT-2's tokenizer ({where}): {str(exc)[:200]}. Use "
                                   f"{OFFLINE_BPE}.") from exc
    return tok.backend_tokenizer


def line_end_id(tok) -> int:
    """Id of the newline token ("\\n" as one byte-level symbol, 'Ċ')."""
    ids = tok.encode("\n", add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError("this tokenizer does not encode a newline as one token")
    return ids[0]


def encode_lines(tok, lines: Sequence[str]) -> torch.Tensor:
    """1-D int64 ids of `lines`, each line followed by the newline token (see the module doc)."""
    nl = line_end_id(tok)
    out: list[int] = []
    for enc in tok.encode_batch(list(lines), add_special_tokens=False):
        out.extend(enc.ids)
        out.append(nl)
    return torch.tensor(out, dtype=torch.long)


def decode(tok, ids: torch.Tensor | Iterable[int]) -> str:
    """The text of token ids (byte-level: exact for any text the tokenizer encoded)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.reshape(-1).tolist()
    return tok.decode(list(ids), skip_special_tokens=False)


def merges(tok) -> list[Any]:
    """The ordered merge list of a BPE tokenizer (what determinism is about)."""
    return json.loads(tok.to_str())["model"]["merges"]


def vocab_tokens(tok) -> list[str]:
    """Token strings in id order (ids 0 .. size-1)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    itos = [""] * len(vocab)
    for t, i in vocab.items():
        itos[i] = t
    if any(t == "" for t in itos):
        raise ValueError("the tokenizer's ids are not contiguous")
    return itos
