"""Key Fourier frequencies of a modular-arithmetic model's token embedding (Nanda et al. 2023, "Progress measures
for grokking via mechanistic interpretability": a grokked model computes (a + b) mod p with the cos and sin of
2πka/p for a few key frequencies k), and the overlap of two models' sets of them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def key_frequencies(state, p: int, factor: float = 2.0) -> tuple[list[int], np.ndarray]:
    """Key frequencies of a K=1 state's token embedding and the energy share of every frequency k = 1..(p-1)/2.

    The embedding W [p, d] of the residues 0..p-1 is Fourier transformed over the residue axis; frequency k's energy
    is |F_k|^2 + |F_{p-k}|^2 summed over the d dimensions (the constant k = 0 left out). A key frequency carries at
    least `factor` times the share a uniform spread over the (p-1)/2 frequencies would give it."""
    w = state["tok_emb"][0, :p].double()  # [p, d]
    f = torch.fft.fft(w, dim=0)  # [p, d] complex
    power = (f.abs() ** 2).sum(1)  # [p]
    ks = np.arange(1, (p - 1) // 2 + 1)
    energy = np.array([float(power[k] + power[p - k]) for k in ks])
    share = energy / energy.sum()
    return [int(k) for k, s in zip(ks, share) if s >= factor / len(ks)], share


def jaccard(a: list[int], b: list[int]) -> float:
    """|A ∩ B| / |A ∪ B| (NaN for two empty sets)."""
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else float("nan")


def frequency_table(states: dict, labels: pd.DataFrame, p: int, factor: float = 2.0
                    ) -> tuple[pd.DataFrame, dict]:
    """Every model's share per frequency (one row per model and k = 1..(p-1)/2, `key` marking its key frequencies)
    and {model: key frequencies}. states: {model id: K=1 state}; labels: one row per model, its id in column
    "copy", and the columns to carry into the table."""
    rows, keys = [], {}
    for lab in labels.to_dict("records"):
        keys[lab["copy"]], share = key_frequencies(states[lab["copy"]], p, factor)
        rows += [{**lab, "frequency": k, "share": float(s), "key": k in keys[lab["copy"]]}
                 for k, s in enumerate(share, 1)]
    return pd.DataFrame(rows), keys
