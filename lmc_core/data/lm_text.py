"""A language model's text cut to a character budget: the training text (windows at every offset), the evaluated
text of two splits, and the unigram entropy a model must beat to have learned more than token frequencies.

Cutting by characters (whole lines) gives the same text at every tokenisation level, so character and subword
models of a size ladder see one corpus (notebook 07 cuts the training plays to study 2's 1,003,854 characters).
"""
from __future__ import annotations

import torch

from .batches import Examples
from .corpus import leading_lines, load_corpus


def every_offset(tokens: torch.Tensor, context: int) -> Examples:
    """Training windows [N, context+1] starting at every offset of a token stream (a view, no copy)."""
    return Examples(tokens=tokens.unfold(0, context + 1, 1))


def part_name(split: str, info: dict | None) -> str:
    """The DataConfig.part of windows at every offset of a split's leading characters."""
    return f"{split}:first {info['chars']} chars, every offset" if info else f"{split}:every offset"


def head(corpus, split: str, chars: int | None) -> tuple[torch.Tensor, dict | None]:
    """The tokens of a split's leading lines holding at most `chars` characters (all of it for None): the same
    text at every tokenisation level."""
    if chars is None:
        return corpus.split(split), None
    return leading_lines(corpus, split, chars)


def load_text(level: str, cache_dir, bpe_vocab: int, train_chars: int | None, eval_chars: int | None,
              fit: str = "train", ev: str = "test", corpus: str = "shakespeare") -> dict:
    """The corpus at one level, its training text (the leading train_chars characters of split `fit`), the
    evaluated text of both splits (their leading eval_chars characters; `ev` is the eval split) and the
    embedding size ("vocab": bpe_vocab for a BPE, GPT-2's shape even with fewer merges)."""
    c = load_corpus(corpus, level=level, vocab_cap=bpe_vocab if level == "bpe" else 10000, cache_dir=str(cache_dir))
    train, info = head(c, fit, train_chars)
    small = eval_chars is None or (info is not None and info["chars"] <= eval_chars)
    train_eval = train if small else head(c, fit, eval_chars)[0]
    vocab = bpe_vocab if level == "bpe" else len(c.vocab)
    return {"corpus": c, "train": train, "info": info, "vocab": max(vocab, len(c.vocab)), "part": part_name(fit, info),
            "splits": {"train": train_eval, "eval": head(c, ev, eval_chars)[0]}}


def unigram_entropy(tokens: torch.Tensor) -> float:
    """Entropy (nats/token) of the token frequencies of a stream: the loss of the best model that ignores context."""
    counts = torch.bincount(tokens.flatten()).double()
    q = counts[counts > 0] / counts.sum()
    return float(-(q * q.log()).sum())
