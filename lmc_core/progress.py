"""Progress bars: a widget in JupyterLab, plain text under papermill and in terminals."""
from __future__ import annotations

import os


def bar(**kwargs):
    """A tqdm bar; plain text when LMC_PLAIN_PROGRESS=1 (set by the report runner)."""
    if os.environ.get("LMC_PLAIN_PROGRESS") == "1":
        from tqdm.std import tqdm
        kwargs.setdefault("mininterval", 15.0)  # a handful of lines in an executed notebook
    else:
        from tqdm.auto import tqdm
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)
