"""Google Colab: where runs/, figures/ and data/cache/ live (Google Drive survives a runtime reset)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .paths import ENV

DRIVE = Path("/content/drive")
COLAB_CELL = "# Google Colab only"  # how every notebook's Colab install cell begins (stamped, and hidden in reports)


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def setup(keep_on_drive: bool = True, folder: str = "lmc_core") -> Path:
    """Point lmc_core's home ($LMC_HOME) at Google Drive (mounted on request) or /content/<folder>.

    Outside Colab it leaves an existing $LMC_HOME alone (and otherwise does nothing); returns the home.
    """
    from .paths import home

    if not on_colab():
        return home()
    if keep_on_drive:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(DRIVE))
        root = DRIVE / "MyDrive" / folder
    else:
        root = Path("/content") / folder
    root.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(root)
    print(f"lmc_core: runs/, figures/ and data/cache/ are kept in {root}"
          + ("" if keep_on_drive else " (lost when the runtime is reset)"))
    return root
