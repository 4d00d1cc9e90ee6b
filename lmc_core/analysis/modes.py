"""Is a per-model score (out-of-distribution accuracy) bimodal, and which mode is each model in?

McCoy et al. (2020) found BERTs fine-tuned with different seeds to spread widely on HANS; Juneja et al.
(2023) read two generalisation strategies off such a spread. Before any clustering of a barrier matrix is
compared with strategies, the scores must show two modes. Two tests, both standard:

- Hartigan & Hartigan's (1985) dip test of unimodality (the `diptest` package; p-value from its table of the
  null distribution of the uniform): a small p rejects one mode;
- a Gaussian mixture with two components against one (scikit-learn's GaussianMixture, maximum likelihood,
  Bayesian information criterion BIC = -2 log L + p log n): delta BIC = BIC(1) - BIC(2) > 0 prefers two.

The verdict is "bimodal" when both agree on two modes and the two components are separated (Ashman et al.'s
1994 D = sqrt(2) |mu_1 - mu_2| / sqrt(s_1^2 + s_2^2) > 2: a clean separation; a dip test also rejects when a
single broad mode has clumps), "unimodal" when neither test sees two modes, "inconclusive" otherwise. The mode of each model is its most probable component of the two-component mixture
(mode 1 = the component with the higher mean).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
REG_COVAR = 1e-4  # a variance floor (a score's standard deviation of at least 0.01)
MIN_SEPARATION = 2.0  # Ashman's D above which two components are separate modes


@dataclass(frozen=True)
class Bimodality:
    """The two tests, the separation, the verdict and each model's mode (0: lower mode, 1: higher mode)."""

    n: int
    dip: float
    dip_p: float
    bic_one: float
    bic_two: float
    means: tuple[float, float]
    sds: tuple[float, float]
    weights: tuple[float, float]
    labels: np.ndarray
    verdict: str  # "bimodal" | "unimodal" | "inconclusive" | "constant"

    @property
    def delta_bic(self) -> float:
        """BIC(one component) - BIC(two): positive prefers two modes."""
        return self.bic_one - self.bic_two

    @property
    def ashman_d(self) -> float:
        """Ashman's D of the two components."""
        return float(np.sqrt(2) * abs(self.means[1] - self.means[0]) / np.sqrt(self.sds[0] ** 2 + self.sds[1] ** 2))

    @property
    def bimodal(self) -> bool:
        """True when both tests say two modes."""
        return self.verdict == "bimodal"

    def text(self, what: str = "out-of-distribution accuracy") -> str:
        """One sentence with both tests."""
        if self.verdict == "constant":
            return f"{what}: every model has the same value, so there is one mode (no test needed)."
        return (f"{what}: dip test D = {self.dip:.3f}, p = {self.dip_p:.2g}; two Gaussian components vs one: "
                f"ΔBIC = {self.delta_bic:+.1f} (means {self.means[0]:.3f} and {self.means[1]:.3f}, Ashman's D = "
                f"{self.ashman_d:.1f}) — {self.verdict} ({self.n} models).")


def bimodality(values, seed: int = 0, alpha: float = ALPHA) -> Bimodality:
    """Test one-dimensional scores [M] for two modes (module docstring); M >= 4 finite values."""
    from diptest import diptest
    from sklearn.mixture import GaussianMixture

    x = np.asarray(values, dtype=float).ravel()
    if x.size < 4 or not np.all(np.isfinite(x)):
        raise ValueError(f"bimodality needs at least 4 finite values, got {x.size} ({np.sum(~np.isfinite(x))} "
                         "not finite)")
    if np.ptp(x) < 1e-12:
        m, z = float(x[0]), np.zeros(x.size, dtype=int)
        return Bimodality(x.size, 0.0, 1.0, float("nan"), float("nan"), (m, m), (0.0, 0.0), (1.0, 0.0), z, "constant")
    dip, p = diptest(x)
    col = x[:, None]
    fits = [GaussianMixture(k, n_init=5, reg_covar=REG_COVAR, random_state=seed).fit(col) for k in (1, 2)]
    two = fits[1]
    order = np.argsort(two.means_.ravel())
    means = tuple(float(two.means_.ravel()[i]) for i in order)
    sds = tuple(float(np.sqrt(two.covariances_.ravel()[i])) for i in order)
    weights = tuple(float(two.weights_[i]) for i in order)
    labels = np.argsort(order)[two.predict(col)]
    bic1, bic2 = (float(f.bic(col)) for f in fits)
    votes = int(p < alpha) + int(bic1 - bic2 > 0)
    verdict = {2: "bimodal", 0: "unimodal"}.get(votes, "inconclusive")
    d = np.sqrt(2) * abs(means[1] - means[0]) / np.sqrt(sds[0] ** 2 + sds[1] ** 2)
    if verdict == "bimodal" and d <= MIN_SEPARATION:
        verdict = "inconclusive"
    if len(set(labels.tolist())) < 2:  # both components on the same models: one mode after all
        verdict = "unimodal" if verdict != "bimodal" else "inconclusive"
    return Bimodality(x.size, float(dip), float(p), bic1, bic2, means, sds, weights, labels.astype(int), verdict)
