"""A study's files (figures as PNG + PDF + CSV, tables, summary) written as one set.

Everything is first written into a hidden staging folder beside the destination; only when the
whole set is there are the files renamed into place (each rename is atomic). A failure or
Ctrl-C while drawing or saving leaves the previous figures untouched and never a truncated file.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import ConfigError
from ..runs.io import FILE_MODE, access_error


def check_output_dir(path: str | os.PathLike, what: str = "figures_dir") -> Path:
    """`path` as a folder that is or can become a writable directory, else ConfigError naming it."""
    p = Path(path)
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what}={str(path)!r}: {parent} is a file, not a folder; choose a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
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

    def commit(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write the whole set into out_dir; nothing there changes unless every file was written."""
        out = check_output_dir(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
        except OSError as e:
            raise access_error(out, e, "write into") from None
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
            written = []
            for name, _ in self._items:
                os.replace(stage / name, out / name)
                written.append(out / name)
            return written
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)
