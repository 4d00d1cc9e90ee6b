"""What git stores, for the tests of committed results: a local `make figures` (complete or interrupted) rewrites
figures/ and README.md in the working tree, and must not turn `make test` red. Outside a git checkout (an sdist,
a copied folder) the files on disk are what is committed."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=60)


def in_git() -> bool:
    """True in a git checkout with a commit."""
    try:
        return _git("rev-parse", "--verify", "HEAD").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def read_bytes(rel: str) -> bytes:
    """The committed content of a file (relative to the checkout)."""
    if in_git():
        out = _git("show", f"HEAD:{rel}")
        if out.returncode == 0:
            return out.stdout
    return (ROOT / rel).read_bytes()


def read_text(rel: str) -> str:
    """The committed text of a file."""
    return read_bytes(rel).decode("utf-8")


def folder(rel: str, dest: Path) -> Path:
    """A copy of the committed files of folder `rel` and its subfolders (e.g. figures/quick/rebuilds/) in `dest`;
    returns dest."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    if in_git():
        names = _git("ls-tree", "-r", "--name-only", f"HEAD:{rel}").stdout.decode().splitlines()
        for name in names:
            data = _git("show", f"HEAD:{rel}/{name}")
            if data.returncode == 0:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                (dest / name).write_bytes(data.stdout)
        return dest
    shutil.copytree(ROOT / rel, dest, dirs_exist_ok=True)
    return dest
