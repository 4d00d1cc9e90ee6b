"""TensorBoard logs of training curves, written from a run's stored loss log.

Every run keeps its loss log (inside its checkpoints and final weights), so logs can be written for
runs trained now and for runs loaded from the store alike: one TensorBoard run per copy, scalars
`train/loss` and `train/lr` against the training step. Writing is idempotent.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..runs.io import write_text

MARK = ".written"


def write_history(logdir: str | Path, history: pd.DataFrame, prefix: str = "copy") -> Path:
    """Write `history` (columns step, copy, loss, lr) as TensorBoard events under logdir/<prefix><c>;
    nothing is written if logdir already holds these logs."""
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    if (logdir / MARK).exists():
        return logdir
    for c, g in history.groupby("copy"):
        w = SummaryWriter(str(logdir / f"{prefix}{int(c)}"))
        for r in g.sort_values("step").itertuples():
            w.add_scalar("train/loss", float(r.loss), int(r.step))
            w.add_scalar("train/lr", float(r.lr), int(r.step))
        w.close()
    write_text(logdir / MARK, f"{len(history)} rows\n")
    return logdir


def command(logdir: str | Path) -> str:
    """How to open the logs in a notebook (JupyterLab, Colab)."""
    from .paths import shown

    return f"%load_ext tensorboard\n%tensorboard --logdir {shown(logdir)}"
