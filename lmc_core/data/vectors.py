"""Vector classification data: MNIST-1D (generated offline by the PyPI package `mnist1d`) and MNIST
(Hugging Face `datasets`, online only; offline it fails at once naming the offline default)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from .batches import Examples
from .hub import DataUnavailableError

VECTOR_DATASETS = ("mnist1d", "mnist")


@dataclass(frozen=True)
class VectorDataConfig:
    """A vector classification dataset: MNIST-1D (40 features, 10 classes; num_samples split 80/20) or MNIST."""

    dataset: str = "mnist1d"
    num_samples: int = 5000  # MNIST-1D: examples generated (the standard 4000 train / 1000 test)
    seed: int = 42  # MNIST-1D generation seed (the package's default)

    def validate(self) -> "VectorDataConfig":
        """Raise ConfigError if a field is out of range."""
        if self.dataset not in VECTOR_DATASETS:
            raise ConfigError(f"dataset={self.dataset!r}; choose one of {list(VECTOR_DATASETS)} (mnist1d works offline)")
        if not isinstance(self.num_samples, int) or self.num_samples < 100:
            raise ConfigError(f"num_samples={self.num_samples!r} must be an integer >= 100")
        return self


def load_vectors(cfg: VectorDataConfig, cache_dir: str | os.PathLike | None = None) -> dict[str, Examples]:
    """{"train": Examples(x [N, D] float32, y [N] int64), "test": ...}; MNIST-1D is cached in cache_dir."""
    cfg.validate()
    if cfg.dataset == "mnist":
        return _mnist()
    from importlib.metadata import version

    # keyed by what the data are derived from: the generator's settings and the mnist1d package version
    cache = None if cache_dir is None else Path(cache_dir) / f"mnist1d-{cfg.num_samples}-{cfg.seed}-{version('mnist1d')}.pt"
    if cache is not None and cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            return {s: Examples(x=blob[f"{s}_x"], y=blob[f"{s}_y"]) for s in ("train", "test")}
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt
            pass
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataUnavailableError("MNIST-1D needs the PyPI package `mnist1d`: pip install mnist1d") from None
    args = get_dataset_args()
    args.num_samples, args.seed = cfg.num_samples, cfg.seed
    state = np.random.get_state()  # mnist1d seeds numpy's global generator; leave the caller's as it was
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    out = {"train": Examples(x=torch.tensor(d["x"], dtype=torch.float32), y=torch.tensor(d["y"], dtype=torch.int64)),
           "test": Examples(x=torch.tensor(d["x_test"], dtype=torch.float32),
                            y=torch.tensor(d["y_test"], dtype=torch.int64))}
    if cache is not None:
        from ..files import atomic_write

        blob = {f"{s}_{n}": out[s][n] for s in out for n in ("x", "y")}
        atomic_write(cache, lambda tmp: torch.save(blob, tmp))
    return out


def train_examples(dataset: str = "mnist1d", cache_dir: str | None = None) -> Examples:
    """The training Examples of a vector dataset: the data recipe of dispatched grid jobs, e.g.
    `Recipe.of("lmc_core.data.vectors:train_examples", dataset="mnist1d", cache_dir=...)` (notebook 04's grids)."""
    return load_vectors(VectorDataConfig(dataset=dataset), cache_dir)["train"]


def _mnist() -> dict[str, Examples]:
    """MNIST (28x28 flattened to 784, scaled to [0, 1]) through Hugging Face `datasets`."""
    from . import hub

    hint = "use the offline default dataset='mnist1d'"
    try:
        import datasets
    except ImportError:
        raise DataUnavailableError(f"MNIST needs the `datasets` package (pip install datasets), or {hint}") from None
    if not hub.hub_reachable():
        hub.force_hf_offline()
    try:
        ds = datasets.load_dataset("mnist")
        out = {}
        for split in ("train", "test"):
            imgs = np.stack([np.asarray(im, dtype=np.float32).reshape(-1) / 255.0 for im in ds[split]["image"]])
            out[split] = Examples(x=torch.from_numpy(imgs), y=torch.tensor(ds[split]["label"], dtype=torch.int64))
        return out
    except Exception as e:  # noqa: BLE001
        raise DataUnavailableError(f"MNIST could not be loaded (the dataset hub is unreachable offline): "
                                   f"{str(e)[:200]}. Instead, {hint}.") from e
