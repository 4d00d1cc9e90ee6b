"""Atomic, verified file writes: a partial or corrupt file is detected and never used.

Two kinds of failure are kept apart: a file that cannot be *read* (permissions, a folder in
its place: `StoreAccessError`, which names the file and is never "repaired") and a file whose
*content* is damaged (truncated, altered, unparsable: `CorruptFileError`, after which the
caller moves it aside with `quarantine` and recomputes it). Files are created with the
user's umask, like any other file they write.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class CorruptFileError(RuntimeError):
    """A stored file is missing, partial or does not match its recorded checksum."""


class StoreAccessError(PermissionError):
    """A stored file exists but cannot be read or written here; the message names it."""


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


FILE_MODE = 0o666 & ~_umask()


def access_error(path: Path, e: OSError, doing: str = "read") -> StoreAccessError:
    """A StoreAccessError naming `path` and what to do about it."""
    why = e.strerror or type(e).__name__
    return StoreAccessError(f"cannot {doing} {path}: {why}. It belongs to another user or its permissions "
                            "forbid it; fix its permissions or choose another folder (store_dir/figures_dir).")


def _is_access(e: OSError) -> bool:
    return isinstance(e, (PermissionError, IsADirectoryError)) or e.errno in (errno.EACCES, errno.EPERM,
                                                                              errno.EISDIR, errno.EROFS)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, fsync it, then rename it into place.

    A crash, a full disk or Ctrl-C leaves the previous `path` untouched (or no file at all).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if _is_access(e) or isinstance(e, (FileExistsError, NotADirectoryError)):
            raise access_error(path, e, "write") from None
        raise
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # mkstemp (and some writers) create 0600; the user's files follow the umask
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_atomic = atomic_write


def write_text(path: Path, text: str) -> None:
    """Write text atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: Path, obj) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def read_bytes(path: Path) -> bytes:
    """File content; CorruptFileError if missing, StoreAccessError if unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CorruptFileError(f"{path}: missing (an interrupted write?)") from None
    except OSError as e:
        if _is_access(e):
            raise access_error(Path(path), e) from None
        raise


def read_json(path: Path):
    """Read JSON; CorruptFileError if missing or unparsable, StoreAccessError if unreadable."""
    data = read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Save tensors as safetensors atomically, then a `<name>.sha256` checksum beside it."""
    path = Path(path)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    md = {"meta": json.dumps(meta or {}, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(data, tmp, metadata=md))
    digest = sha256(path)
    write_text(path.with_name(path.name + ".sha256"), digest)


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load verified tensors and their meta.

    CorruptFileError if missing, partial or altered; StoreAccessError if it cannot be read.
    """
    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    expected = read_bytes(side).decode("ascii", "replace").strip()
    try:
        if sha256(path) != expected:
            raise CorruptFileError(f"{path}: checksum mismatch (truncated or altered file)")
    except FileNotFoundError:
        raise CorruptFileError(f"{path}: missing (an interrupted write?)") from None
    except OSError as e:
        if _is_access(e):
            raise access_error(path, e) from None
        raise
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        return load_file(str(path)), meta
    except OSError as e:
        if _is_access(e):
            raise access_error(path, e) from None
        raise CorruptFileError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any parse failure means the file is unusable
        raise CorruptFileError(f"{path}: {e}") from None


def quarantine(path: Path) -> Path | None:
    """Move a corrupt file (and its checksum) aside as `<name>.corrupt`, `.corrupt-2`, ... so that it is
    never used and never destroyed (earlier quarantined files are kept). Returns the new name."""
    path = Path(path)
    n = 1
    while True:
        dest = path.with_name(path.name + (".corrupt" if n == 1 else f".corrupt-{n}"))
        if not dest.exists() and not dest.with_name(dest.name + ".sha256").exists():
            break
        n += 1
    moved = None
    side = path.with_name(path.name + ".sha256")
    for p, d in ((path, dest), (side, dest.with_name(dest.name + ".sha256"))):
        if p.exists():
            os.replace(p, d)
            moved = moved or d
    if moved is not None:
        print(f"moved the damaged file aside: {dest.name}")
    return moved


def discard_result(run_dir: Path, error: Exception, who: str) -> None:
    """A finished run whose final weights are corrupt: say so and quarantine its weights and DONE marker, so
    that it is trained again (from its newest valid checkpoint) instead of being used."""
    print(f"{who}: {error}; retraining")
    quarantine(Path(run_dir) / "final.safetensors")
    quarantine(Path(run_dir) / "DONE.json")
