"""linear_path for lmc_core's own models (K=1 models of a registered family): all alphas as one K-copy ensemble."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data.batches import Examples
from ..families import family_of
from .interpolate import interpolation_curve


def family_examples(fam, cfg, data, where: str):
    """A split in the family's format: what its eval_examples take, or (x, y, ...) tensors / a DataLoader of such
    batches mapped onto the names of the family's example tensors (e.g. x, y for the MLP)."""
    if isinstance(data, Examples) or (isinstance(data, torch.Tensor) and data.dim() == 1):
        return data
    if not isinstance(data, tuple):
        try:
            parts = [b if isinstance(b, (tuple, list)) else (b,) for b in data]
        except TypeError:
            raise TypeError(f"{where}: give the {fam.name!r} family's data (Examples, a token tensor for a language "
                            f"model) or (x, y) tensors") from None
        data = tuple(torch.cat(col) for col in zip(*parts))
    names = list(fam.example().examples.tensors)
    if len(data) != len(names):
        raise ValueError(f"{where}: the {fam.name!r} family's examples are ({', '.join(names)}); got a tuple of "
                         f"{len(data)} tensors")
    return Examples(**dict(zip(names, data)))


def family_curve(cfg, model_a, model_b, splits: dict, alphas: np.ndarray, batch_size: int, device
                 ) -> tuple[pd.DataFrame, list[str], str]:
    """(curve, notes, mode) of the path between two K=1 family models."""
    fam = family_of(cfg)
    if model_b.cfg != cfg:
        raise ValueError("model_a and model_b have different configs: a linear path needs one architecture")
    dev = device or next(model_a.parameters()).device
    a = {n: t.detach() for n, t in model_a.state_dict().items()}
    b = {n: t.detach() for n, t in model_b.state_dict().items()}
    data = {s: family_examples(fam, cfg, d, f"data[{s!r}]") for s, d in splits.items()}
    curve = interpolation_curve(cfg, a, b, data, alphas, batch_size=batch_size, device=dev)
    curve = curve.rename(columns={"tokens": "examples"})
    notes = [f"an lmc_core {fam.name!r} model: all {len(alphas)} alphas evaluated as one {len(alphas)}-copy ensemble "
             "by its family (tied weights are one parameter, interpolated once; fixed tables such as a sinusoidal "
             "position table are rebuilt from the config, never interpolated)"]
    return curve[["split", "alpha", "loss", "error", "examples"]], notes, "family ensemble"
