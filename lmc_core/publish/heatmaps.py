"""Heatmaps of a table with something written or outlined in every cell: a grid of settings with its numbers in
words, or a matrix with marked cells (e.g. each model's key Fourier frequencies)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .plotting import plt


def text_heatmap(values: pd.DataFrame, texts: pd.DataFrame, xlabel: str, ylabel: str, colorbar: str,
                 vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis_r"):
    """values [rows, columns] as colours (non-finite cells left blank) with texts (same shape) written in every
    cell, white on a coloured cell; the index and columns label the axes. Returns (figure, axes)."""
    fig, ax = plt.subplots(figsize=(1.6 * values.shape[1] + 2, 0.9 * values.shape[0] + 1.5))
    v = values.to_numpy(float)
    im = ax.imshow(np.where(np.isfinite(v), v, np.nan), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            ax.text(j, i, texts.iat[i, j], ha="center", va="center", fontsize=6.5, color="w" if np.isfinite(v[i, j])
                    else "k")
    ax.set_xticks(range(v.shape[1]), [f"{c:g}" for c in values.columns])
    ax.set_yticks(range(v.shape[0]), [f"{r:g}" for r in values.index])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, label=colorbar)
    return fig, ax


def marked_heatmap(values: pd.DataFrame, marked: pd.DataFrame, xlabel: str, colorbar: str, cmap: str = "magma"):
    """values [rows, columns] as colours with the cells where `marked` (same shape, bool) is true outlined; row
    labels are the index as text. Returns (figure, axes)."""
    fig, ax = plt.subplots(figsize=(0.35 * values.shape[1] + 3, 0.35 * values.shape[0] + 1.6))
    im = ax.imshow(values.to_numpy(float), cmap=cmap, aspect="auto")
    for i, j in zip(*np.nonzero(marked.to_numpy(bool))):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="c", lw=1.2))
    ax.set_xticks(range(values.shape[1]), [str(c) for c in values.columns], fontsize=6)
    ax.set_yticks(range(values.shape[0]), [" ".join(map(str, r)) if isinstance(r, tuple) else str(r)
                                           for r in values.index], fontsize=7)
    ax.set_xlabel(xlabel)
    fig.colorbar(im, ax=ax, label=colorbar)
    return fig, ax
