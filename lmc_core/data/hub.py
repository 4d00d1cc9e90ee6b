"""The online routes' shared pieces: the error every offline failure raises, whether the Hugging Face Hub can
be reached, and putting its libraries in offline mode (so they fail fast instead of retrying)."""
from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse


class DataUnavailableError(RuntimeError):
    """A corpus, dataset or model cannot be loaded here; the message says what to install, fetch or change."""


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub (port 443) opens within ``timeout``."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def force_hf_offline() -> None:
    """Put huggingface_hub/datasets in offline mode (env vars and, if imported, configs)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    for mod, attrs in (
        ("datasets.config", ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")),
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
    ):
        if mod in sys.modules:
            for attr in attrs:
                if hasattr(sys.modules[mod], attr):
                    setattr(sys.modules[mod], attr, True)
