"""The endpoints of interpolation paths: their losses per pair, and whether a language model learned more than
token frequencies (the precondition of a claim about its paths)."""
from __future__ import annotations

import pandas as pd

from .criteria import LEARNED_MARGIN


def endpoint_losses(curves: pd.DataFrame) -> pd.DataFrame:
    """Per pair of a curve table (columns pair, split, alpha, loss; splits "train" and "eval"): the mean train and
    eval loss of its two endpoints (alpha 0 and 1) and the larger endpoint loss of each split."""
    ends = curves[curves.alpha.isin([0.0, 1.0])]
    g = ends.pivot_table(index=["pair", "alpha"], columns="split", values="loss").reset_index()
    return g.groupby("pair").agg(train_loss=("train", "mean"), eval_loss=("eval", "mean"), train_max=("train", "max"),
                                 eval_max=("eval", "max")).reset_index()


def learned_beyond_unigram(ends: pd.DataFrame, entropy: float, margin: float = LEARNED_MARGIN) -> bool:
    """True when every endpoint's training loss lies below the unigram entropy of its training text and every
    held-out loss a fraction `margin` below it (criteria.LEARNED_MARGIN): more than token frequencies learned."""
    return bool(ends.train_max.max() < entropy and ends.eval_max.max() < (1 - margin) * entropy)
