"""A study's files (figures as PNG + PDF + CSV, tables, summary) written as one set, swapped in as a whole.

1. Every file is written into a hidden staging folder beside the destination (`.staging-*`; a failure or
   Ctrl-C here leaves the previous set untouched and the folder is removed).
2. A journal (`.swap-<prefix>.json`, written atomically) records the complete staged set and the old files
   of the same prefix that the new set does not have. Writing it is the commit point: from then on the new
   set *is* the result, and whoever finds the journal finishes the swap (roll forward, never back).
3. The staged files are renamed into place (each rename atomic), the old ones removed, the journal deleted
   last.

Why a journal and not one atomic switch (a versioned folder and one rename, or a symlink): readers address
figures as `figures/<profile>/04_x.png`, and `figures/quick` is a folder committed to git, file by file, that
the README and the HTML reports link into; a symlink in its place would change what is committed (and what
git, GitHub and a browser show), and one rename of the whole folder would have to copy every other notebook's
files into the new folder and would lose a set that another notebook (`figures --jobs N`) swaps in meanwhile.
So the files stay plain files in the committed folder, and wholeness is kept by the journal and a lock:

- The swap (journal, renames, removal) runs under an exclusive lock on the folder (`flock` on the folder
  itself: no lock file, released by the system when a process dies). An error or Ctrl-C anywhere in `commit`
  is settled by what is on disk, not by how far the writer got: if its journal is there (even if the Ctrl-C
  came right after the journal's rename) the writer finishes the swap before it stops, else it removes its
  staging folder and the old set stands. The staged files a journal names are never deleted before they are
  in place; only a process killed outright (or a second Ctrl-C) leaves a journal.
- Every reader in this package reads through `reading(folder)` (`read_set`, `readme.render`,
  `report_index.write_index`, `report_html.read_summary`; `readme.findings_table` is called inside
  render's block): it finishes any journalled swap, then holds a shared lock while it reads, so it waits for a
  swap in progress and never sees old and new files of one set side by side. `reading` blocks nest (an inner
  one of the same folder and thread takes no second lock).
- Leftovers are cleaned by the next run (`complete_swaps`, called before every write): journals are
  finished, staging folders that no live writer holds (each writer holds a lock on its own staging folder)
  are removed. Without `flock` (Windows) staging folders are removed once older than a day.

Readers outside the package (git, a file browser) see plain files: between the commit point and the end of a
swap interrupted by a hard kill they can see a mixed set until the next reader or run of the package finishes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock; swaps are then journalled but not locked
    fcntl = None

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
        number such as "01"), files of that prefix the new set does not contain are removed in the same swap.

        Returns the paths of the set's files. ConfigError if out_dir is (under) a file or not writable,
        StoreAccessError if a file cannot be written; any error or Ctrl-C before the journal is on disk leaves
        the previous set as it was, one after it gives the new set (module docstring). RuntimeError inside a
        reading() block of out_dir in this thread."""
        out = check_output_dir(out_dir)
        if _read_by_this_thread(out):
            raise RuntimeError(f"{out} is being read in a reading() block of this thread: write the figure set after "
                               "the block (the swap would wait for the block's own lock)")
        stage: Path | None = None
        stage_lock: int | None = None
        journal: Path | None = None
        try:
            try:
                out.mkdir(parents=True, exist_ok=True)
                with _locked(out):
                    _complete(out)  # leftovers of an interrupted run
                    stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
                    stage_lock = _hold(stage)  # taken before the folder's lock is let go: a cleaner sees it held
            except OSError as e:
                raise access_error(out, e, "write into") from None
            journal = out / f".swap-{prefix or stage.name}.json"
            for name, write in self._items:
                path = stage / name
                write(path)
                os.chmod(path, FILE_MODE)
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            missing = [name for name, _ in self._items if not (stage / name).is_file()]
            if missing:
                raise RuntimeError(f"figure set incomplete, nothing replaced: {missing}")
            with _locked(out):
                _complete(out)  # a swap of this prefix that a killed writer journalled meanwhile goes first
                stale = sorted(p.name for p in out.glob(f"{prefix}_*") if p.is_file() and p.name not in self.names) \
                    if prefix else []
                atomic_write(journal, lambda tmp: Path(tmp).write_text(json.dumps(
                    {"stage": stage.name, "files": self.names, "remove": stale}), encoding="utf-8"))
                _finish(out, journal)
        except BaseException:
            # What happened is decided by the disk, not by how far this code got: an interruption can strike after
            # the journal's rename and before any flag is set. Our journal on disk: the new set is committed, so
            # finish it (roll forward); none: the old set stands, and the staged files go. A journal's staged
            # files are never deleted before they are renamed into place.
            if stage is not None:
                with contextlib.suppress(BaseException):  # a second Ctrl-C: the next reader or run settles it
                    with _locked(out):
                        _settle(out, journal, stage)
            raise
        finally:
            _release(stage_lock)
        return [out / name for name in self.names]


# ----------------------------------------------------------------------------- locks
@contextlib.contextmanager
def _locked(folder: Path, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or shared) flock on `folder` itself (nothing without fcntl)."""
    fd = _hold(folder, shared)
    try:
        yield
    finally:
        _release(fd)


_NO_LOCKS = -1  # _hold's answer where the file system has no flock (some network file systems)


def _hold(folder: Path, shared: bool = False, wait: bool = True) -> int | None:
    """An open descriptor of `folder` holding its flock; None if not `wait` and another holds it; _NO_LOCKS
    without flock (Windows, some network file systems)."""
    if fcntl is None:
        return _NO_LOCKS
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return _NO_LOCKS
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        os.close(fd)  # closing the descriptor releases its flock


# ----------------------------------------------------------------------------- finishing swaps, reading sets
def _finish(out: Path, journal: Path) -> None:
    """Carry out a journalled swap (idempotent: every step can be repeated after an interruption, by anyone)."""
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:  # finished meanwhile
        return
    stage = out / plan["stage"]
    for name in plan["files"]:
        with contextlib.suppress(FileNotFoundError):  # renamed already
            os.replace(stage / name, out / name)
    for name in plan["remove"]:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    journal.unlink(missing_ok=True)


def _settle(out: Path, journal: Path | None, stage: Path) -> None:
    """After an interrupted commit (the folder's lock held): finish the swap if `journal` is on disk and names
    `stage` (it was committed), else remove `stage` unless a journal names it (a journal that cannot be read is
    left to _complete, with the staged files)."""
    plan = None
    if journal is not None:
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
        except FileNotFoundError:
            plan = None
        except (ValueError, OSError):
            return
    if isinstance(plan, dict) and plan.get("stage") == stage.name:
        _finish(out, journal)
    else:
        shutil.rmtree(stage, ignore_errors=True)


def _complete(out: Path) -> list[str]:
    """complete_swaps with the folder's exclusive lock held."""
    done = []
    for tmp in out.glob("..swap-*.tmp"):  # a journal being written when its writer died (written under this lock)
        tmp.unlink(missing_ok=True)
    for journal in sorted(out.glob(".swap-*.json")):
        try:
            _finish(out, journal)
        except (ValueError, KeyError, TypeError):  # an unreadable journal cannot have been written: atomic_write
            journal.unlink(missing_ok=True)
        except OSError as e:
            raise access_error(out, e, "finish the interrupted figure swap in") from None
        done.append(journal.name)
    for stage in out.glob(".staging-*"):
        if not stage.is_dir():
            continue
        try:
            fd = _hold(stage, wait=False)
        except FileNotFoundError:
            continue
        if fd == _NO_LOCKS:  # no way to tell a live writer: only old ones
            if time.time() - stage.stat().st_mtime > 86400:
                shutil.rmtree(stage, ignore_errors=True)
        elif fd is not None:  # no writer holds it: left by an interrupted run
            try:
                shutil.rmtree(stage, ignore_errors=True)
            finally:
                _release(fd)
    return done


def complete_swaps(folder: str | os.PathLike) -> list[str]:
    """Finish every figure-set swap an interruption left half done in `folder` and remove the staging folders
    of interrupted runs (waiting for a swap in progress). Returns the journals completed. StoreAccessError if
    a swap cannot be finished (permissions)."""
    out = Path(folder)
    if not out.is_dir():
        return []
    if _read_by_this_thread(out):  # the reading() block around this call finished them and holds off any swap
        return []
    try:
        with _locked(out):
            return _complete(out)
    except PermissionError as e:
        raise access_error(out, e, "finish the interrupted figure swap in") from None


_reading = threading.local()  # .folders: {real path: depth} of the reading() blocks this thread is inside


def _read_by_this_thread(out: Path) -> bool:
    return os.path.realpath(out) in getattr(_reading, "folders", {})


@contextlib.contextmanager
def reading(folder: str | os.PathLike) -> Iterator[Path]:
    """Read a figure folder as whole sets: swaps an interruption left half done are finished first, then a
    shared lock is held for the block, so no swap runs while the block reads (every file read belongs to one
    whole set, old or new). Yields the folder as a Path (which may not exist).

    Blocks nest: inside a reading() block of the same folder (in this thread) another one takes no lock of its
    own (the outer block's shared lock covers it; a second lock would wait for the first). Writing a set into
    a folder this thread is reading is refused (RuntimeError): it would wait for itself."""
    out = Path(folder)
    key = os.path.realpath(out)
    held = _reading.__dict__.setdefault("folders", {})
    if key in held:
        held[key] += 1
        try:
            yield out
        finally:
            held[key] -= 1
        return
    with _holding_shared(out):
        held[key] = 1
        try:
            yield out
        finally:
            del held[key]


@contextlib.contextmanager
def _holding_shared(out: Path) -> Iterator[int | None]:
    """complete_swaps, then a shared lock on `out` (none if it is not a folder) held for the block."""
    while True:
        complete_swaps(out)
        if not out.is_dir():
            yield None
            return
        fd = _hold(out, shared=True)
        if not any(out.glob(".swap-*.json")):  # none interrupted between the two locks
            break
        _release(fd)
    try:
        yield fd
    finally:
        _release(fd)


def read_set(folder: str | os.PathLike, prefix: str | None = None) -> dict[str, bytes]:
    """The files of a figure folder (those of notebook `prefix`, e.g. "01", or all) as {file name: content},
    read as one whole set (`reading`); hidden files (staging folders, journals) are not part of it."""
    with reading(folder) as out:
        if not out.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in sorted(out.glob(f"{prefix}_*" if prefix else "*"))
                if p.is_file() and not p.name.startswith(".")}


def _plain(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)
