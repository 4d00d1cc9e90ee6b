"""Progress bars: a widget in JupyterLab, plain text under papermill and in terminals.

Under ``LMC_PLAIN_PROGRESS=1`` (set by the report runner, :func:`lmc_core.publish.reports.run_notebooks`)
a bar is one line of plain text on **stdout**, e.g.::

    train K=8: 1200/4000 (30%) [01:30<03:30, 13.3 it/s, loss=2.41]

rewritten at most every :data:`PLAIN_INTERVAL` seconds (each rewrite starts with a carriage
return, so a terminal or JupyterLab shows it in place and papermill streams it as one log line),
and finished, when the bar closes, by its final line and a newline::

    train K=8: 4000/4000 [05:01, 13.3 it/s, loss=2.39]

A notebook export keeps only that final line (see ``lmc_core.publish.reports.tidy_notebook``).
"""
from __future__ import annotations

import os
import sys

from tqdm.std import tqdm as _StdTqdm

ENV = "LMC_PLAIN_PROGRESS"
# Seconds between two updates of a plain bar: a terminal user watching `python -m lmc_core figures`
# sees the bar move a few times a minute; an executed notebook does not fill up with lines.
PLAIN_INTERVAL = 20.0


def plain() -> bool:
    """Whether bars print as plain text (``LMC_PLAIN_PROGRESS=1``)."""
    return os.environ.get(ENV) == "1"


def _fmt_rate(rate: float | None, unit: str) -> str:
    """``13.3 it/s`` (or ``2.5 s/it`` when slower than one per second); empty when unknown."""
    if not rate:
        return ""
    if rate >= 100:
        return f"{rate:,.0f} {unit}/s"
    if rate >= 1:
        return f"{rate:.3g} {unit}/s"
    return f"{1 / rate:.3g} s/{unit}"


def format_plain(n: float, total: float | None, elapsed: float, prefix: str = "", unit: str = "it",
                 rate: float | None = None, postfix: str | None = None, initial: float = 0,
                 final: bool = False) -> str:
    """One line of a plain bar: ``desc: n/total (pct%) [elapsed<remaining, rate, postfix]``.

    A final line (the bar closed) leaves out the percentage and the remaining time, and its rate is
    the average over the whole bar.
    """
    fmt = _StdTqdm.format_interval
    if (rate is None or final) and elapsed:
        rate = (n - initial) / elapsed
    count = f"{n:g}/{total:g}" if total else f"{n:g} {unit}"
    if total and not final:
        count += f" ({100 * n / total:.0f}%)"
    timing = fmt(elapsed)
    if total and not final:
        timing += "<" + (fmt((total - n) / rate) if rate else "?")
    parts = [timing] + [s for s in (_fmt_rate(rate, unit), (postfix or "").strip(", ")) if s]
    head = f"{prefix}: " if prefix else ""
    return f"{head}{count} [{', '.join(parts)}]"


class PlainBar(_StdTqdm):
    """A tqdm bar printing plain lines to stdout (see the module docstring).

    Nothing is printed before the first step (a short bar prints only its final line), then at most
    one update every ``mininterval`` seconds, then the final line when the bar closes.
    """

    monitor_interval = 0  # no monitor thread: updates come from update() only, at most every mininterval
    _final = False

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("file", sys.stdout)
        kwargs.setdefault("mininterval", PLAIN_INTERVAL)
        kwargs.setdefault("miniters", 1)  # no dynamic miniters: time alone decides when to print
        super().__init__(*args, **kwargs)

    def __str__(self) -> str:
        d = self.format_dict
        return format_plain(d["n"], d["total"], d["elapsed"], prefix=d.get("prefix") or "",
                            unit=d.get("unit") or "it", rate=d.get("rate"), postfix=d.get("postfix"),
                            initial=d.get("initial") or 0, final=self._final)

    def display(self, msg=None, pos=None):
        """Write the current line after a carriage return (the final one is flushed with its newline)."""
        if msg is None and not self._final and self.n <= self.initial:
            return True  # nothing done yet
        self.fp.write("\r" + (str(self) if msg is None else msg))
        if not self._final:
            self.fp.flush()  # the final line goes out together with the newline close() writes next
        return True

    def close(self):
        """Print the final line (all of the bar's steps, the average rate) and a newline."""
        if not getattr(self, "disable", True):
            self._final = True
        super().close()
        if self._final:
            try:
                self.fp.flush()
            except (ValueError, OSError):  # a closed stream: nothing to flush
                pass


def bar(**kwargs):
    """A progress bar: tqdm's widget in JupyterLab, a :class:`PlainBar` when LMC_PLAIN_PROGRESS=1."""
    if plain():
        return PlainBar(**kwargs)
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)
