"""One process at a time per run directory: an O_EXCL lock file holding the owner's pid and host.

Two processes asked for the same run (two notebooks, a notebook and a cluster job) never train
it at the same time: the second waits until the first has finished and then loads the stored
result. A lock left behind by a process that no longer runs on this host is detected as stale
and taken over. A lock held from another host cannot be checked; after `timeout` seconds the
waiter stops with a message naming the lock file.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from ..files import access_error

LOCK_NAME = "LOCK"
_HELD: set[str] = set()  # lock files held by this process


class RunLockedError(RuntimeError):
    """Another process holds the run's lock and did not release it in time."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or garbage: treated as held (not stale) unless old


def is_stale(path: Path, owner: dict | None, garbage_after: float = 60.0) -> bool:
    """True if the lock's owner is known to be gone (same host, dead pid, or our own pid without
    holding it), or the lock file is unreadable garbage older than `garbage_after` seconds."""
    if owner is None:
        return False
    if not owner:
        try:
            return time.time() - path.stat().st_mtime > garbage_after
        except FileNotFoundError:
            return False
    if owner.get("host") != socket.gethostname():
        return False
    pid = int(owner.get("pid", -1))
    if pid == os.getpid():
        return str(path) not in _HELD
    return not _pid_alive(pid)


@contextlib.contextmanager
def run_lock(directory: str | os.PathLike, timeout: float | None = None, poll: float = 1.0, what: str = "run"):
    """Hold `directory`/LOCK for the duration of the block (waiting for another holder to finish)."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise access_error(d, e, "create") from None
    path = d / LOCK_NAME
    if timeout is None:
        timeout = float(os.environ.get("LMC_LOCK_TIMEOUT", "86400"))
    start = time.monotonic()
    told = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if is_stale(path, owner):
                print(f"removing a stale lock {path} (its process {owner.get('pid', '?')} is gone)",
                      file=sys.stderr)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            if time.monotonic() - start > timeout:
                raise RunLockedError(
                    f"{path} is held by process {owner.get('pid', '?') if owner else '?'} on "
                    f"{owner.get('host', '?') if owner else '?'} (since {owner.get('since', '?') if owner else '?'}), "
                    f"which is training this {what}. Wait for it, or delete the lock file if that process is gone."
                ) from None
            if not told:
                print(f"waiting for process {owner.get('pid', '?') if owner else '?'} that is training this {what} "
                      f"({path})", file=sys.stderr)
                told = True
            time.sleep(poll)
            continue
        except FileNotFoundError:  # the folder was removed by a finishing process: make it again
            d.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as e:
            raise access_error(path, e, "create") from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        break
    _HELD.add(str(path))
    try:
        yield path
    finally:
        _HELD.discard(str(path))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
