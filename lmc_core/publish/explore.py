"""Interactive explorer of interpolation curves: pick the pair, split, metric and barrier definition and
see the curve with its barrier, without retraining (ipywidgets in JupyterLab/Colab).

Under papermill and in the HTML reports (no widget frontend) it shows the default selection as a
static figure instead, with a line saying what the interactive version offers.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..analysis import barrier as B
from ..analysis.metrics import LABELS, METRIC_SCALE, UNITS
from .plotting import COLORS, plt

MEAN = "mean over pairs"


def interactive() -> bool:
    """True in a live Jupyter frontend where widgets render; False under papermill / the report runner."""
    if os.environ.get("LMC_PLAIN_PROGRESS") == "1":
        return False
    try:
        from IPython import get_ipython

        ip = get_ipython()
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def select_curve(curves: pd.DataFrame, choice: dict, metric: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(alphas, values, label) of the curve picked by `choice` ({column: value}; pair may be MEAN)."""
    d = curves
    label = []
    for col, val in choice.items():
        if val == MEAN:
            label.append(MEAN)
            continue
        d = d[d[col] == val]
        label.append(f"{col} {val}")
    if d.empty:
        raise ValueError(f"no curve for {choice}")
    g = d.groupby("alpha")[metric].mean().sort_index()
    return g.index.to_numpy(dtype=float), g.to_numpy(dtype=float), ", ".join(label)


def barrier_axes(ax, alphas: np.ndarray, values: np.ndarray, definition: str, metric: str) -> float:
    """Draw a curve with the reference its barrier is measured from and mark the barrier; returns it."""
    b = B.barrier(alphas, values, definition)
    scale = METRIC_SCALE.get(metric, "relative")
    inst = B.instability(alphas, values, definition, scale)
    ax.plot(alphas, values, "-o", ms=3, color=COLORS[0], label=LABELS.get(metric, metric))
    ends = 0.5 * (values[0] + values[-1])
    chord = (1 - alphas) * values[0] + alphas * values[-1]
    if definition in ("mean", "midpoint"):
        ax.axhline(ends, color="grey", ls=":", lw=1, label="endpoints' mean")
        i = int(np.argmax(values)) if definition == "mean" else None
        x = alphas[i] if i is not None else 0.5
        top = values[i] if i is not None else float(np.interp(0.5, alphas, values))
        ax.annotate("", xy=(x, top), xytext=(x, ends), arrowprops={"arrowstyle": "<->", "color": COLORS[3]})
    else:
        ax.plot(alphas, chord, color="grey", ls=":", lw=1, label="chord between the endpoints")
        if definition == "subchord":  # the best sub-chord
            best, seg = 0.0, None
            for i in range(len(alphas) - 2):
                for j in range(i + 2, len(alphas)):
                    w = (alphas[i + 1:j] - alphas[i]) / (alphas[j] - alphas[i])
                    h = values[i + 1:j] - ((1 - w) * values[i] + w * values[j])
                    if h.max() > best:
                        best, seg = float(h.max()), (i, j, i + 1 + int(np.argmax(h)))
            if seg is not None:
                i, j, m = seg
                ax.plot([alphas[i], alphas[j]], [values[i], values[j]], color=COLORS[3], lw=1, ls="--",
                        label="highest sub-chord")
                ref = values[i] + (alphas[m] - alphas[i]) / (alphas[j] - alphas[i]) * (values[j] - values[i])
                ax.annotate("", xy=(alphas[m], values[m]), xytext=(alphas[m], ref),
                            arrowprops={"arrowstyle": "<->", "color": COLORS[3]})
        else:
            m = int(np.argmax(values - chord))
            ax.annotate("", xy=(alphas[m], values[m]), xytext=(alphas[m], chord[m]),
                        arrowprops={"arrowstyle": "<->", "color": COLORS[3]})
    unit = UNITS[scale]
    ax.set_title(f"barrier '{definition}' = {b:.4g} ({inst:.2f} {unit})", fontsize=9)
    ax.set_xlabel(r"interpolation weight $\alpha$")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return b


def explorer_figure(curves: pd.DataFrame, choice: dict, split: str, metric: str, definition: str):
    """One panel: the chosen curve and its barrier under `definition`."""
    a, v, label = select_curve(curves[curves.split == split], choice, metric)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    barrier_axes(ax, a, v, definition, metric)
    fig.suptitle(f"{label}, {split} split", fontsize=10)
    fig.tight_layout()
    return fig


def _show(fig) -> None:
    """Display a figure once and release it."""
    from IPython.display import display

    display(fig)
    plt.close(fig)


def _panel(pickers: dict, draw, rows: list[int]):
    """Widgets: the pickers in rows of the given lengths above an output that `draw(values)` fills, redrawn
    whenever a picker changes. The box is displayed here and not returned (a cell's last value is displayed
    again by Jupyter: the explorer would show twice)."""
    import ipywidgets as W
    from IPython.display import display

    out = W.Output()

    def redraw(_=None):  # noqa: ANN001 - widget callback
        with out:
            out.clear_output(wait=True)
            _show(draw({k: w.value for k, w in pickers.items()}))

    for w in pickers.values():
        w.observe(redraw, names="value")
    redraw()
    widgets, lines, i = list(pickers.values()), [], 0
    for n in rows:
        lines.append(W.HBox(widgets[i : i + n]))
        i += n
    display(W.VBox([*lines, out]))


def explore(curves: pd.DataFrame, keys: tuple[str, ...] = ("pair",), metrics: tuple[str, ...] = ("loss", "ppl", "error"),
            definition: str = B.DEFAULT):
    """Show the explorer (widgets in a live notebook, a static figure of the default selection otherwise)."""
    from IPython.display import Markdown, display

    if curves.empty:
        display(Markdown("*No interpolation curves in this run to explore.*"))
        return None
    options = {k: sorted(curves[k].unique().tolist()) + ([MEAN] if k == "pair" else []) for k in keys}
    named = [k for k in keys if k != "pair"]  # the first combination the curves have (not every one exists)
    first = curves.sort_values(named).iloc[0] if named else None
    default = {k: (MEAN if k == "pair" else first[k]) for k in options}
    splits = sorted(curves.split.unique().tolist(), key=lambda s: (s != "test", s))
    if not interactive():
        _show(explorer_figure(curves, default, splits[0], metrics[0], definition))
        display(Markdown("*Static view of the explorer (default selection). Opened in JupyterLab or Colab, this "
                         "cell shows menus for the pair, split, metric and barrier definition.*"))
        return None
    import ipywidgets as W

    pickers = {k: W.Dropdown(options=opts, value=default[k], description=k) for k, opts in options.items()}
    pickers["split"] = W.Dropdown(options=splits, value=splits[0], description="split")
    pickers["metric"] = W.Dropdown(options=list(metrics), value=metrics[0], description="metric")
    pickers["definition"] = W.Dropdown(options=list(B.DEFINITIONS), value=definition, description="barrier")
    return _panel(pickers, lambda v: explorer_figure(curves, {k: v[k] for k in keys}, v["split"], v["metric"],
                                                     v["definition"]), [3, len(pickers) - 3])


def training_figure(curves: pd.DataFrame, choice: dict, metric: str = "acc"):
    """Train and test accuracy (or loss) vs step of the run picked by `choice` ({column: value})."""
    d = curves
    for col, val in choice.items():
        d = d[d[col] == val]
    d = d.sort_values("step")
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for i, split in enumerate(("train", "test")):
        col = f"{split}_{metric}"
        if col in d:
            ax.plot(d.step, d[col], "-" if split == "test" else "--", color=COLORS[i], label=split)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy" if metric == "acc" else "cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in choice.items()), fontsize=10)
    fig.tight_layout()
    return fig


def explore_training(curves: pd.DataFrame, keys: tuple[str, ...]):
    """Pick a run of a grid and see its train/test accuracy or loss during training (widgets in a live
    notebook, a static figure of the first run otherwise)."""
    from IPython.display import Markdown, display

    options = {k: sorted(curves[k].unique().tolist()) for k in keys}
    default = {k: v[0] for k, v in options.items()}
    if not interactive():
        _show(training_figure(curves, default))
        display(Markdown("*Static view (first setting). In JupyterLab or Colab this cell shows menus for every "
                         "setting and the metric.*"))
        return None
    import ipywidgets as W

    pickers = {k: W.Dropdown(options=v, value=default[k], description=k) for k, v in options.items()}
    pickers["metric"] = W.Dropdown(options=[("accuracy", "acc"), ("loss", "loss")], value="acc", description="metric")
    return _panel(pickers, lambda v: training_figure(curves, {k: v[k] for k in keys}, v["metric"]), [len(pickers)])
