"""Token vocabularies and a PTB-style word tokenizer.

Tokenization conventions (:func:`word_tokenize`):

* text is lowercased and the typographic apostrophe ``’`` becomes ``'``;
* words are runs of letters/digits that may contain *internal* apostrophes and hyphens, so
  Shakespearean contractions and compounds stay whole: ``o'er``, ``call'd``, ``is't``,
  ``ne'er``, ``varro's``, ``fellow-scholars``;
* a leading apostrophe stays on the word only for the common elisions in
  :data:`ELISIONS` (``'tis``, ``'twas``, ``'gainst``, ``'em`` ...); any other leading or
  trailing apostrophe is a quote mark (or a plural possessive, ``goodness'``) and becomes
  its own ``'`` token;
* a run of two or more dashes (or an em dash) becomes one ``--`` token;
* every other non-space character (``. , ! ? ; : ( ) "`` ...) is a token of its own.

Unlike torchtext's ``basic_english`` nothing is dropped, and no token is empty.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["Vocab", "word_tokenize", "char_tokenize", "ELISIONS", "UNK", "EOS"]

UNK = "<unk>"
EOS = "<eos>"

ELISIONS: tuple[str, ...] = (
    "tis", "twas", "twere", "twill", "twould", "gainst", "em", "mongst", "tween", "twixt",
    "scape", "scaped", "bout", "cause", "ld", "ll", "st", "t",
)

_TOKEN = re.compile(
    r"(?<![^\W_'])'(?:" + "|".join(sorted(ELISIONS, key=len, reverse=True)) + r")(?![^\W_])"
    r"|[^\W_]+(?:['\-][^\W_]+)*"
    r"|-{2,}|\u2014+"
    r"|\S"
)


def word_tokenize(line: str) -> list[str]:
    """Lowercase ``line`` and split it into words and punctuation tokens (see module doc)."""
    text = line.lower().replace("\u2019", "'").replace("\u2018", "'")
    return ["--" if t.startswith(("--", "\u2014")) else t for t in _TOKEN.findall(text)]


def char_tokenize(line: str) -> list[str]:
    """Split ``line`` into characters followed by a newline character token."""
    return list(line) + ["\n"]


class Vocab:
    """Bidirectional token <-> id map with an ``<unk>`` fallback for unknown tokens."""

    unk: str = UNK

    def __init__(self, itos: Sequence[str], unk: str = UNK) -> None:
        """Create a vocabulary from an ordered list of distinct tokens containing ``unk``."""
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("Vocab tokens must be distinct")
        if unk not in self.stoi:
            raise ValueError(f"Vocab must contain the unknown token {unk!r}")
        self.unk = unk
        self.unk_id: int = self.stoi[unk]

    @classmethod
    def build(
        cls,
        counter_or_tokens: Mapping[str, int] | Iterable[str],
        cap: int,
        specials: Sequence[str] = (UNK, EOS),
    ) -> "Vocab":
        """Specials first, then most frequent tokens (ties alphabetical), ``len <= cap``."""
        specials = tuple(specials)
        if UNK not in specials:
            specials = (UNK,) + specials
        if cap < len(specials):
            raise ValueError(f"vocab cap {cap} is smaller than the {len(specials)} specials")
        if isinstance(counter_or_tokens, Mapping):
            counts = counter_or_tokens
        else:
            counts = collections.Counter(counter_or_tokens)
        ranked = sorted(
            (tok for tok in counts if tok not in specials), key=lambda t: (-counts[t], t)
        )
        return cls(list(specials) + ranked[: cap - len(specials)])

    def __len__(self) -> int:
        """Number of tokens, specials included."""
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        """Whether ``token`` has its own id."""
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        """Vocabularies are equal when their token lists and unk token match."""
        return isinstance(other, Vocab) and self.itos == other.itos and self.unk == other.unk

    def __repr__(self) -> str:
        """Short description with the size and first tokens."""
        return f"Vocab(size={len(self)}, head={self.itos[:5]!r})"

    def encode(self, tokens: Iterable[str]) -> torch.Tensor:
        """Map tokens to a 1-D int64 tensor of ids; unknown tokens map to ``unk_id``."""
        get, unk = self.stoi.get, self.unk_id
        return torch.tensor([get(t, unk) for t in tokens], dtype=torch.long)

    def decode(self, ids: torch.Tensor | Iterable[int]) -> list[str]:
        """Map ids (tensor or iterable of ints) back to tokens."""
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return [self.itos[int(i)] for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable representation, inverse of :meth:`from_dict`."""
        return {"itos": list(self.itos), "unk": self.unk}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Vocab":
        """Rebuild a vocabulary saved with :meth:`to_dict`."""
        return cls(d["itos"], unk=d.get("unk", UNK))
