"""Every threshold a finding is judged by, with its source: one set of constants for the whole project.

A study names a Criterion (or a constant below) and never spells the number itself; the findings layer
(`findings.py`) turns a Criterion and the data into a verdict word. Where a threshold is ours rather than a seed
study's, the source says so and why.
"""
from __future__ import annotations

from dataclasses import dataclass

POINTS = "percentage points"
PERCENT = "% of the endpoints' mean"


@dataclass(frozen=True)
class Criterion:
    """A threshold rule: a value below `threshold` (in `unit`) reads `below`, at or above it `above`."""

    name: str  # what is compared, e.g. "the error barrier"
    threshold: float
    unit: str
    source: str
    below: str = "stable"
    above: str = "unstable"

    def words(self) -> str:
        """'the 2-point threshold' / 'the 2 % threshold' / 'the 0.05-nats threshold'."""
        if self.unit == POINTS:
            return f"the {self.threshold:g}-point threshold"
        if self.unit.startswith("%"):
            return f"the {self.threshold:g} % threshold"
        return f"the {self.threshold:g}-{self.unit} threshold"


# Frankle et al. 2020 ("Linear Mode Connectivity and the Lottery Ticket Hypothesis", ICML): a network is stable to
# SGD noise when the error barrier between two copies is below 2 percentage points of error.
FRANKLE = Criterion("the error barrier", 2.0, POINTS, "Frankle et al. 2020: the error barrier in absolute points")
# The same 2 applied to a loss barrier in % of the endpoints' mean loss: the PTB transformer study's and study 2's
# (GPT-style models on Shakespeare) own reading of Frankle's threshold; reported beside the error criterion.
RELATIVE_LOSS = Criterion("the loss barrier relative to the endpoints' mean", 2.0, PERCENT,
                          "Frankle et al.'s 2 on the loss barrier in % of the endpoints' mean, as in studies 1 and 2")

# A path whose `chord` barrier (largest height above the chord between the endpoints) is at most this, in the
# instability's unit, has no bump: its `mean` barrier is half the endpoints' difference, not a barrier (Entezari
# et al. 2022 define the barrier against the chord). Ours: a tenth of the 2-point/2 % threshold.
CONVEX_TOL = 0.1
# The same for barriers in nats on a loss of order 1 (Juneja et al.'s mod_BH matrix of notebook 05). Ours.
CONVEX_NATS = 1e-4

# Grokking: test accuracy at least this (Power et al. 2022 plot accuracy reaching ~100 %; Nanda et al. 2023 use a
# test loss threshold; 95 % is ours, held for a window of evaluations so a transient spike does not count).
GROK_ACCURACY = 0.95

# Endpoints that learned: a classifier's test loss below this fraction of a uniform guess's (ours: a loss within
# 10 % of chance is a stall, not a plateau; notebook 04 calls an MLP cell at or above it collapsed); still "falling" when the test loss dropped by more than PLATEAU_DROP
# (a fraction) over the last 40 % of the monitored steps (ours).
LEARNED_FRACTION = 0.9
PLATEAU_DROP = 0.02
# A language model learned more than token frequencies when its held-out loss lies this fraction below the unigram
# entropy of the training text (ours; CompactGPT's quick eval loss sat at the entropy).
LEARNED_MARGIN = 0.05
# Overfitting: the eval - train loss gap at the endpoints above this % of the train loss (study 2's TinyGPT and
# ToyGPT, which it did not call over-parameterised, had gaps of about a tenth; CompactGPT and MinGPT many times).
OVERFIT_PCT = 25.0
# OVERFIT_PCT as a Criterion on the per-pair gap in % of the pair's train loss (notebook 07's overfitting finding).
OVERFIT = Criterion("the eval − train loss gap at the endpoints", OVERFIT_PCT, "% of the train loss",
                    "ours: study 2's non-over-parameterised sizes had gaps of about a tenth of the train loss, its "
                    "over-parameterised ones many times it", below="not overfitting", above="overfitting")
# A seed study's number counts as reproduced when ours lies within this factor of it on the same scale (ours: the
# PTB study reports one number per setting without an interval, so only a coarse band can be drawn around it).
REPRODUCED_FACTOR = 1.5
# The evaluation noise of a barrier (its window-bootstrap standard error) is small against the spread between
# independent units when it is below this fraction of their standard deviation (ours: its variance is then under a
# quarter of the units').
NOISE_SMALL_FRACTION = 0.5
# Two arms' endpoints are of comparable quality when their mean test losses differ by at most this many nats (ours:
# a tenth of a nat per token, about a twentieth of a character LM's loss; notebook 03's scratch vs pretrained arms).
ENDPOINT_MATCH_NATS = 0.1
