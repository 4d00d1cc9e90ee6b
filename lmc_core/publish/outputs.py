"""A study's files (figures as PNG + PDF + CSV, tables, summary) written as one set, swapped in as a whole.

1. Every file is written into a hidden staging folder beside the destination (a failure or Ctrl-C
   here leaves the previous set untouched).
2. A journal (`.swap-<prefix>.json`, written atomically) records the complete staged set and the
   old files of the same prefix that the new set does not have.
3. The staged files are renamed into place (each rename atomic), the old ones removed, the journal
   deleted last.
An interruption in step 3 leaves the journal: `complete_swaps(folder)` (called before every read of
a figure folder by this package, and before the next write) finishes the swap, so no reader ever
sees old and new files of one set side by side.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError
from ..files import FILE_MODE, access_error, atomic_write


def check_output_dir(path: str | os.PathLike, what: str = "figures_dir", writable: bool = True) -> Path:
    """`path` as a folder that is or can become a (writable, unless writable=False) directory, else ConfigError
    naming it. A run store needs no write access to read finished runs: only training writes."""
    p = Path(path)
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what}={str(path)!r}: {parent} is a file, not a folder; choose a folder")
            if writable and not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{what}={str(path)!r}: {parent} is not writable; choose another folder")
            break
    return p


class Outputs:
    """Collects a study's figures and tables, then writes them together with `commit`."""

    def __init__(self) -> None:
        self._items: list[tuple[str, Any]] = []  # (file name, writer(path))

    def _add(self, file_name: str, write) -> None:
        if file_name in self.names:
            raise ValueError(f"{file_name} is queued twice in one figure set; give the second one another name")
        self._items.append((file_name, write))

    def figure(self, name: str, fig, data: pd.DataFrame) -> None:
        """<name>.png, <name>.pdf and <name>.csv (the plotted numbers)."""
        self._add(f"{name}.png", lambda p: fig.savefig(p, dpi=150, bbox_inches="tight"))
        # no creation date: the same figure gives the same bytes
        self._add(f"{name}.pdf", lambda p: fig.savefig(p, format="pdf", bbox_inches="tight",
                                                         metadata={"CreationDate": None}))
        self.table(name, data)

    def table(self, name: str, df: pd.DataFrame) -> None:
        """<name>.csv."""
        self._add(f"{name}.csv", lambda p: df.to_csv(p, index=False))

    def text(self, file_name: str, text: str) -> None:
        """A text file (e.g. the summary as Markdown)."""
        self._add(file_name, lambda p: Path(p).write_text(text, encoding="utf-8"))

    def json(self, file_name: str, obj) -> None:
        """A JSON file."""
        self._add(file_name, lambda p: Path(p).write_text(json.dumps(obj, indent=2, sort_keys=True, default=_plain),
                                                          encoding="utf-8"))

    @property
    def names(self) -> list[str]:
        """File names in the set."""
        return [n for n, _ in self._items]

    def commit(self, out_dir: str | os.PathLike, prefix: str | None = None) -> list[Path]:
        """Write the whole set into out_dir and swap it in (see the module docstring). With `prefix` (a notebook
        number such as "01"), files of that prefix the new set does not contain are removed in the same swap."""
        out = check_output_dir(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            complete_swaps(out)
            stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
        except OSError as e:
            raise access_error(out, e, "write into") from None
        journal = out / f".swap-{prefix or stage.name}.json"
        try:
            for name, write in self._items:
                path = stage / name
                write(path)
                os.chmod(path, FILE_MODE)
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            missing = [name for name, _ in self._items if not (stage / name).is_file()]
            if missing:
                raise RuntimeError(f"figure set incomplete, nothing replaced: {missing}")
            stale = sorted(p.name for p in out.glob(f"{prefix}_*") if p.is_file() and p.name not in self.names) \
                if prefix else []
            atomic_write(journal, lambda tmp: Path(tmp).write_text(json.dumps(
                {"stage": stage.name, "files": self.names, "remove": stale}), encoding="utf-8"))
        except BaseException:
            if not journal.exists():  # the swap never started: the old set stands
                shutil.rmtree(stage, ignore_errors=True)
            raise
        _finish(out, journal)
        return [out / name for name in self.names]


def _finish(out: Path, journal: Path) -> None:
    """Carry out a journalled swap (idempotent: every step can be repeated after an interruption)."""
    plan = json.loads(journal.read_text(encoding="utf-8"))
    stage = out / plan["stage"]
    for name in plan["files"]:
        if (stage / name).exists():
            os.replace(stage / name, out / name)
    for name in plan["remove"]:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    journal.unlink(missing_ok=True)


def complete_swaps(folder: str | os.PathLike) -> list[str]:
    """Finish every figure-set swap an interruption left half done in `folder` (and drop staging folders older
    than a day that were never journalled: their swap never started). Returns the journals completed."""
    out = Path(folder)
    if not out.is_dir():
        return []
    done = []
    for journal in sorted(out.glob(".swap-*.json")):
        try:
            _finish(out, journal)
        except (ValueError, KeyError):  # an unreadable journal cannot have been written: atomic_write
            journal.unlink(missing_ok=True)
        done.append(journal.name)
    for stage in out.glob(".staging-*"):  # a recent one may belong to a study that is writing right now
        if stage.is_dir() and time.time() - stage.stat().st_mtime > 86400:
            shutil.rmtree(stage, ignore_errors=True)
    return done


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)
