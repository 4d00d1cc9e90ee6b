"""Atomic, verified file writes: a partial or corrupt file is detected and never used."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class CorruptFileError(RuntimeError):
    """A stored file is missing, partial or does not match its recorded checksum."""


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj) -> None:
    """Write JSON atomically."""
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True)))


def read_json(path: Path):
    """Read JSON; CorruptFileError if missing or unparsable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: {e}") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    """Save tensors as safetensors atomically, then a `<name>.sha256` checksum beside it."""
    path = Path(path)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    md = {"meta": json.dumps(meta or {}, sort_keys=True)}
    _atomic(path, lambda tmp: save_file(data, tmp, metadata=md))
    digest = sha256(path)
    _atomic(path.with_name(path.name + ".sha256"), lambda tmp: Path(tmp).write_text(digest))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Load verified tensors and their meta; CorruptFileError if partial or altered."""
    path = Path(path)
    side = path.with_name(path.name + ".sha256")
    if not path.exists() or not side.exists():
        raise CorruptFileError(f"{path}: missing file or checksum (an interrupted write?)")
    if sha256(path) != side.read_text().strip():
        raise CorruptFileError(f"{path}: checksum mismatch (truncated or altered file)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
        return load_file(str(path)), meta
    except Exception as e:  # noqa: BLE001 - any parse failure means the file is unusable
        raise CorruptFileError(f"{path}: {e}") from None


def quarantine(path: Path) -> Path:
    """Move a corrupt file (and its checksum) aside so it is never used but not destroyed."""
    path = Path(path)
    dest = path.with_name(path.name + ".corrupt")
    for p, d in ((path, dest), (path.with_name(path.name + ".sha256"), dest.with_name(dest.name + ".sha256"))):
        if p.exists():
            os.replace(p, d)
    return dest
