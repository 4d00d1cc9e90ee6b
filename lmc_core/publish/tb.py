"""TensorBoard logs of training curves, written from a run's stored loss log.

Every run keeps its loss log (inside its checkpoints and final weights), so logs can be written for
runs trained now and for runs loaded from the store alike: one TensorBoard run per copy, scalars
`train/loss` and `train/lr` against the training step. A log folder is keyed by what it was written
from (a digest of the loss log): the same log is not written twice, another one replaces it.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pandas as pd

from ..files import write_text

MARK = ".written"


def write_history(logdir: str | Path, history: pd.DataFrame, prefix: str = "copy") -> Path:
    """Write `history` (columns step, copy, loss, lr) as TensorBoard events under logdir/<prefix><c>;
    nothing is written if logdir already holds these logs, and logs written from another history (a run
    trained for more steps, another run under the same label) are replaced."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    digest = hashlib.sha256(history[["step", "copy", "loss", "lr"]].to_csv(index=False).encode()).hexdigest()
    mark = logdir / MARK
    if mark.exists():
        if mark.read_text().split()[:1] == [digest]:
            return logdir
        for old in logdir.iterdir():  # derived files of another history: rewritten below
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    for c, g in history.groupby("copy"):
        w = SummaryWriter(str(logdir / f"{prefix}{int(c)}"))
        for r in g.sort_values("step").itertuples():
            w.add_scalar("train/loss", float(r.loss), int(r.step))
            w.add_scalar("train/lr", float(r.lr), int(r.step))
        w.close()
    write_text(mark, f"{digest} {len(history)} rows\n")
    return logdir


def command(logdir: str | Path) -> str:
    """How to open the logs in a notebook (JupyterLab, Colab)."""
    from .paths import shown

    return f"%load_ext tensorboard\n%tensorboard --logdir {shown(logdir)}"


def tensorboard_logs(runs: list[dict], store_root: str | Path, prefix: str) -> str:
    """Write every run's stored loss log for TensorBoard (one folder per run, named by its "run" label) under
    <store>/tensorboard/<prefix>; returns the lines that open it in a notebook."""
    import re

    from ..runs.store import history_of

    tb_dir = Path(store_root) / "tensorboard" / prefix
    for r in runs:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(r["run"])).strip("-")
        write_history(tb_dir / name, history_of(r["store"]))
    return command(tb_dir)
