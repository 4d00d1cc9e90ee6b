"""Offline tasks from Shakespeare's words for a small encoder: masked-token pretraining, and a fine-tuning task
with two generalisation strategies (notebook 05; Juneja et al. 2023, McCoy et al. 2019/2020).

Text. Every play's dialogue lines are lower-cased and cut into words ([a-z]+); a word is kept when the MiniLM
WordPiece tokenizer encodes it as one token (and, with a compact vocabulary, when that token is among the
`vocab_size` most frequent of the plays), so one word is one token. A play's words form one stream; plays are
split by a seeded hash into pretraining/fine-tuning plays (train) and held-out plays (evaluation).

* ``task="mlm"``: BERT's masked-token prediction (Devlin et al. 2019) on windows of `words` consecutive words,
  ``[CLS] w_1 .. w_n [SEP]``; exactly round(mask_fraction * n) positions per window are predicted (80 % [MASK],
  10 % a random token, 10 % unchanged), drawn once from the seed (static masking, as the original BERT data).
* ``task="phrase"``: an NLI-like task with a fixed hypothesis, the two-word phrase `phrase` (default "my lord";
  Shakespeare's most frequent address). Label **entailed** iff the passage contains the phrase: the first word
  immediately followed by the second (the rule, which needs word order). Passages are windows of the
  held-out-free text without either word, into which words are planted at random places:
  - *entailed* (half of the passages): the phrase;
  - *lexical* non-entailed: only one of the two words (the other slot a filler word of the text);
  - *order* non-entailed (the disambiguating share `epsilon` of the non-entailed training passages): both words,
    reversed ("lord my") or apart ("my ... lord").
  A bag-of-words solution ("both words occur", the lexical-overlap heuristic of McCoy et al. 2019) fits every
  training passage but the order ones; the rule fits all. The **out-of-distribution** set is HANS-like: every
  passage holds both words, half as the phrase, half reversed or apart, so the bag-of-words solution scores 50 %
  and the rule 100 %. The in-distribution test set follows the training distribution (same epsilon).

Token ids are MiniLM WordPiece ids with vocab_size=0 (for the MiniLM encoder; cut to the plays' vocabulary by the
encoder family), else ids of the compact vocabulary: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, then tokens by
falling frequency. Every passage has the same length (words + 2 tokens): no padding. Everything is a pure
function of the config (no global RNG) and cached in-process.
"""
from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass

import torch

from .. import rng
from ..config import ConfigError
from .batches import Examples
from .shakespeare import shakespeare_plays

TASKS = ("mlm", "phrase")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CATEGORIES = ("entailed", "lexical", "order")  # category codes 0, 1, 2 of a phrase-task passage
HELD_OUT = 0.2  # share of plays held out for evaluation


@dataclass(frozen=True)
class PlaysTaskConfig:
    """A task built from the plays' words (module docstring): `task` "mlm" (pretraining) or "phrase"."""

    task: str = "phrase"
    words: int = 10  # words per passage (tokens: words + 2)
    vocab_size: int = 512  # 0: MiniLM WordPiece ids; > 0: the compact vocabulary of this size
    phrase: tuple[str, str] = ("my", "lord")
    epsilon: float = 0.05  # share of non-entailed training passages holding both words out of order
    train_size: int = 20000  # phrase-task training passages (mlm: every window of the training plays)
    eval_size: int = 2000  # passages of each evaluation split
    mask_fraction: float = 0.15
    seed: int = 0

    def validate(self) -> "PlaysTaskConfig":
        """Raise ConfigError naming the field to change."""
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r}; choose one of {list(TASKS)}")
        if not isinstance(self.words, int) or not 4 <= self.words <= 126:
            raise ConfigError(f"words={self.words!r} must be an integer in [4, 126]")
        if not isinstance(self.vocab_size, int) or (self.vocab_size != 0 and self.vocab_size < 64):
            raise ConfigError(f"vocab_size={self.vocab_size!r}: 0 (MiniLM WordPiece ids) or at least 64")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"epsilon={self.epsilon} must lie in [0, 1]")
        if not 0.0 < self.mask_fraction < 1.0:
            raise ConfigError(f"mask_fraction={self.mask_fraction} must lie in (0, 1)")
        for name in ("train_size", "eval_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 2:
                raise ConfigError(f"{name}={v!r} must be an integer >= 2")
        if len(self.phrase) != 2 or self.phrase[0] == self.phrase[1]:
            raise ConfigError(f"phrase={self.phrase!r} must be two different words")
        return self


# --------------------------------------------------------------------------- words and vocabulary


def _tokenizer():
    from .tasks import wordpiece_tokenizer

    return wordpiece_tokenizer()


@functools.lru_cache(maxsize=1)
def play_words() -> dict[str, list[int]]:
    """Play id -> the WordPiece ids of its one-token words, in reading order (cached; treat as read-only)."""
    tok = _tokenizer()
    ids: dict[str, int | None] = {}
    out = {}
    for play, (_, lines) in sorted(shakespeare_plays().items()):
        words = [w for ln in lines for w in re.findall(r"[a-z]+", ln.lower())]
        new = sorted({w for w in words if w not in ids})
        for w, e in zip(new, tok.encode_batch(new, add_special_tokens=False)):
            ids[w] = e.ids[0] if len(e.ids) == 1 and e.ids[0] != tok.token_to_id("[UNK]") else None
        out[play] = [ids[w] for w in words if ids[w] is not None]
    return out


def held_out_plays(seed: int = 0) -> list[str]:
    """The plays kept out of pretraining and fine-tuning (a seeded hash ranks them)."""
    plays = sorted(play_words(), key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    return sorted(plays[: max(1, round(HELD_OUT * len(plays)))])


@functools.lru_cache(maxsize=8)
def vocabulary(size: int) -> tuple[int, ...]:
    """WordPiece ids of the compact vocabulary: the specials, then the size - 5 most frequent word tokens."""
    tok = _tokenizer()
    counts = Counter(i for ws in play_words().values() for i in ws)
    specials = [tok.token_to_id(t) for t in SPECIALS]
    return tuple(specials + [i for i, _ in counts.most_common(size - len(specials))])


def _ids(cfg: PlaysTaskConfig):
    """(map WordPiece id -> model id or -1, CLS, SEP, MASK, first word id) of the config's vocabulary."""
    tok = _tokenizer()
    table = torch.full((tok.get_vocab_size(),), -1, dtype=torch.int64)
    if cfg.vocab_size:
        vocab = vocabulary(cfg.vocab_size)
        table[torch.tensor(vocab)] = torch.arange(len(vocab))
    else:
        table = torch.arange(tok.get_vocab_size())
    special = [int(table[tok.token_to_id(t)]) for t in ("[CLS]", "[SEP]", "[MASK]")]
    return table, *special


def _streams(cfg: PlaysTaskConfig, part: str) -> list[torch.Tensor]:
    """Each play's word stream in model ids (words outside the vocabulary dropped), training or held-out plays."""
    table = _ids(cfg)[0]
    held = set(held_out_plays(cfg.seed))
    out = []
    for play, ws in play_words().items():
        if (play in held) == (part == "eval"):
            t = table[torch.tensor(ws, dtype=torch.int64)]
            out.append(t[t >= 0])
    return out


def _windows(streams: list[torch.Tensor], n: int) -> torch.Tensor:
    """Non-overlapping windows [N, n] of every stream."""
    return torch.cat([s[: len(s) // n * n].view(-1, n) for s in streams if len(s) >= n])


def phrase_ids(cfg: PlaysTaskConfig) -> tuple[int, int]:
    """Model ids of the phrase's two words (ConfigError if a word is not one token of the vocabulary)."""
    tok = _tokenizer()
    table = _ids(cfg)[0]
    out = []
    for w in cfg.phrase:
        e = tok.encode(w, add_special_tokens=False).ids
        if len(e) != 1 or int(table[e[0]]) < len(SPECIALS):
            raise ConfigError(f"phrase word {w!r} is not one token of the vocabulary (vocab_size={cfg.vocab_size})")
        out.append(int(table[e[0]]))
    return out[0], out[1]


def _frame(words: torch.Tensor, cls: int, sep: int) -> torch.Tensor:
    n = len(words)
    return torch.cat([torch.full((n, 1), cls), words, torch.full((n, 1), sep)], 1)


# --------------------------------------------------------------------------- the tasks


@functools.lru_cache(maxsize=8)
def plays_task(cfg: PlaysTaskConfig) -> dict[str, Examples]:
    """The task's splits as Examples (cached; treat as read-only).

    mlm: {"train", "valid"} with input_ids [N, T], attention_mask [N, T], mlm_positions [N, m], mlm_labels [N, m];
    phrase: {"train", "id", "ood"} with input_ids [N, T], attention_mask [N, T], labels [N] (0 entailed,
    1 not entailed) and category [N] (index into CATEGORIES). T = words + 2.
    """
    cfg.validate()
    if cfg.task == "mlm":
        return {part: _mlm(cfg, part) for part in ("train", "valid")}
    return {s: _phrase(cfg, s) for s in ("train", "id", "ood")}


def _mlm(cfg: PlaysTaskConfig, part: str) -> Examples:
    _, cls, sep, mask = _ids(cfg)
    w = _windows(_streams(cfg, "train" if part == "train" else "eval"), cfg.words)
    if part != "train":
        w = w[torch.randperm(len(w), generator=rng.generator(cfg.seed, 0xE7A1))[: cfg.eval_size]]
    n, L = w.shape
    m = max(1, round(cfg.mask_fraction * L))
    g = rng.generator(cfg.seed, 0x3A5C, part == "train")
    pos = torch.argsort(torch.rand(n, L, generator=g), 1)[:, :m].sort(1).values  # [n, m] word positions
    labels = w.gather(1, pos)
    u = torch.rand(n, m, generator=g)
    lo = len(SPECIALS) if cfg.vocab_size else 1000  # random replacements: word tokens
    hi = cfg.vocab_size or _tokenizer().get_vocab_size()
    rand = torch.randint(lo, hi, (n, m), generator=g)
    new = torch.where(u < 0.8, torch.full_like(labels, mask), torch.where(u < 0.9, rand, labels))
    ids = _frame(w.scatter(1, pos, new), cls, sep)
    return Examples(input_ids=ids, attention_mask=torch.ones_like(ids), mlm_positions=pos + 1, mlm_labels=labels)


def _phrase(cfg: PlaysTaskConfig, split: str) -> Examples:
    """One split of the phrase task (module docstring)."""
    _, cls, sep, _ = _ids(cfg)
    a, b = phrase_ids(cfg)
    n = cfg.words
    base = _windows(_streams(cfg, "train" if split == "train" else "eval"), n - 2)
    base = base[~((base == a) | (base == b)).any(1)]  # passages without either word
    size = cfg.train_size if split == "train" else cfg.eval_size
    g = rng.generator(cfg.seed, 0xF4A5E, ("train", "id", "ood").index(split))
    w = base[torch.randint(0, len(base), (size,), generator=g)]
    filler = base[torch.randint(0, len(base), (size,), generator=g), 0]
    u = torch.rand(size, generator=g)
    if split == "ood":
        cat = torch.where(u < 0.5, 0, 2)
    else:
        cat = torch.where(u < 0.5, 0, torch.where(u < 0.5 + 0.5 * cfg.epsilon, 2, 1))
    first, second = torch.full((size,), a), torch.full((size,), b)
    drop_first = torch.rand(size, generator=g) < 0.5  # lexical: which word is missing
    first = torch.where((cat == 1) & drop_first, filler, first)
    second = torch.where((cat == 1) & ~drop_first, filler, second)
    reverse = torch.rand(size, generator=g) < 0.5  # order: "b a" adjacent, or "a ... b" apart
    first = torch.where((cat == 2) & reverse, b, first)
    second = torch.where((cat == 2) & reverse, a, second)
    apart = (cat == 2) & ~reverse
    p1 = torch.randint(0, n - 1, (size,), generator=g)
    gap = 2 + (torch.rand(size, generator=g) * (n - 2)).long()  # second word 2.. positions later
    q1 = torch.minimum(p1, torch.full_like(p1, n - 3))
    q2 = torch.minimum(q1 + gap, torch.full_like(q1, n - 1))
    p2 = torch.where(apart, q2, p1 + 1)
    p1 = torch.where(apart, q1, p1)
    col = torch.arange(n)[None].expand(size, n)
    planted = (col == p1[:, None]) | (col == p2[:, None])
    rank = ((~planted).long().cumsum(1) - 1).clamp(0, n - 3)
    words = w.gather(1, rank)
    words = torch.where(col == p1[:, None], first[:, None], words)
    words = torch.where(col == p2[:, None], second[:, None], words)
    ids = _frame(words, cls, sep)
    return Examples(input_ids=ids, attention_mask=torch.ones_like(ids), labels=(cat != 0).long(), category=cat)


def heuristic_predictions(cfg: PlaysTaskConfig, ex: Examples) -> dict[str, torch.Tensor]:
    """Labels [N] the two strategies predict: "rule" (the phrase occurs) and "bag of words" (both words occur)."""
    a, b = phrase_ids(cfg)
    w = ex["input_ids"][:, 1:-1]
    both = (w == a).any(1) & (w == b).any(1)
    phrase = ((w[:, :-1] == a) & (w[:, 1:] == b)).any(1)
    return {"rule": (~phrase).long(), "bag of words": (~both).long()}


def dataset_card(cfg: PlaysTaskConfig) -> list[dict]:
    """One row per split: passages, share entailed, shares of each category, and the accuracy of the rule and
    of the bag-of-words heuristic (what each strategy scores there)."""
    rows = []
    for split, ex in plays_task(cfg).items():
        if "labels" not in ex.tensors:
            return [{"split": s, "windows": len(e), "tokens per window": e["input_ids"].shape[1],
                     "predicted positions": e["mlm_positions"].shape[1]} for s, e in plays_task(cfg).items()]
        y, cat = ex["labels"], ex["category"]
        pred = heuristic_predictions(cfg, ex)
        rows.append({"split": split, "passages": len(y), "tokens": int(ex["input_ids"].numel()),
                     **{f"share {c}": float((cat == i).double().mean()) for i, c in enumerate(CATEGORIES)},
                     **{f"accuracy of {k}": float((v == y).double().mean()) for k, v in pred.items()}})
    return rows
