"""Parameter domains: the checks that refuse a bad value before any work, naming it and saying what to change.

check_int / check_real / check_choice raise ConfigError (a ValueError); the frozen callables below (Int, Real,
Choice, ...) carry a domain on a study parameter (lmc_core.studies.params.param) and say it in words for
docs/parameters.md (`words()`). The MAX_* bounds are the upper ends of the size-like parameters. lmc_core.config
re-exports the checks; this module imports nothing from the package.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

# Upper bounds of the size-like parameters (docs/parameters.md lists every study parameter with its domain): far
# beyond any setting of the seed studies (GPT-2 small: d 768, 12 layers, 50,257 BPE entries; the largest grid 4,950
# pairs), and low enough that a typo (10**9) is refused before any data is loaded, instead of exhausting memory or
# aborting inside a library (a BPE of 10**9 entries killed the kernel with no traceback).
MAX_UNITS = 10_000  # initialisations, pairs, copies, models, seeds, restarts, checkpoints, evaluations
MAX_STEPS = 100_000_000  # training steps, warm-up steps, epochs, "every n steps"
MAX_WIDTH = 65_536  # hidden units, d_model, MLP width, heads, layers, context, adapter and LoRA ranks
MAX_BATCH = 1 << 20  # examples per batch
MAX_EXAMPLES = 10**10  # tokens, characters or passages read or evaluated
MAX_VOCAB = 1 << 18  # vocabulary entries (262,144: larger than any tokenizer in use)
MAX_RESAMPLES = 1_000_000  # bootstrap resamples and permutations
MAX_SEED = 2**63 - 1  # seeds are 64-bit
MAX_MODULUS = 4096  # grokking's modulus p: p**2 pairs (16.8 M) are the data set
MAX_THREADS = 4096  # torch CPU threads
MAX_PLANE_POINTS = 201  # grid points per axis of a 2-D plane: points**2 models are evaluated (40,401 at most)
MAX_ALPHAS = 1001  # points on a path, endpoints included: more than anyone can read off a curve (a typo such as
# 10**6 would ask for a model per point)


class ConfigError(ValueError):
    """A configuration value is invalid; the message says what to change."""


def check_choice(name: str, value: Any, allowed) -> Any:
    """Raise ConfigError unless value is one of `allowed`; returns the value."""
    if value not in tuple(allowed):
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(allowed)}")
    return value


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
    """Raise ConfigError unless value is an integer (not a bool) in [lo, hi]; returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}={value!r} must be an integer{_range_words(lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{name}={value!r} is out of range: it must be an integer{_range_words(lo, hi)}")
    return int(value)


def check_real(name: str, value: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
               hi_open: bool = False) -> float:
    """Raise ConfigError unless value is a finite real number in the interval [lo, hi] (open ends as asked)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} must be a number{_interval_words(lo, hi, lo_open, hi_open)}") from None
    if isinstance(value, bool) or v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}={value!r} must be a finite number{_interval_words(lo, hi, lo_open, hi_open)}")
    if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and (v > hi or (hi_open and v == hi)):
        raise ConfigError(f"{name}={value!r} is out of range: it must lie in{_interval_words(lo, hi, lo_open, hi_open)}")
    return v


def _range_words(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    return f" >= {lo}" if lo is not None else (f" <= {hi}" if hi is not None else "")


def _interval_words(lo, hi, lo_open, hi_open, fmt=str) -> str:
    """" [lo, hi)" and the like (None: an infinite end, open); "" when both ends are None. fmt formats a bound."""
    if lo is None and hi is None:
        return ""
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f" {left}{'-inf' if lo is None else fmt(lo)}, {'inf' if hi is None else fmt(hi)}{right}"


# ------------------------------------------------------------------------------- domain checks of parameters
# Callables (name, value) -> None that raise ConfigError naming the parameter; `words()` says the domain for
# docs/parameters.md (lmc_core.publish.params_doc). Study parameters carry them (lmc_core.studies.params.param).
@dataclass(frozen=True)
class Int:
    """An integer (not a bool) in [lo, hi]."""

    lo: int | None = None
    hi: int | None = None

    def __call__(self, name: str, v: Any) -> None:
        check_int(name, v, self.lo, self.hi)

    def words(self) -> str:
        return f"integer in [{_num(self.lo)}, {_num(self.hi)}]"


@dataclass(frozen=True)
class Real:
    """A finite number in the interval [lo, hi] (ends open as asked)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, name: str, v: Any) -> None:
        check_real(name, v, self.lo, self.hi, self.lo_open, self.hi_open)

    def words(self) -> str:
        return "finite number in" + (_interval_words(self.lo, self.hi, self.lo_open, self.hi_open, _num)
                                     or " (-inf, inf)")


@dataclass(frozen=True)
class Choice:
    """One of the given values."""

    options: tuple

    def __call__(self, name: str, v: Any) -> None:
        check_choice(name, v, self.options)

    def words(self) -> str:
        return "one of " + ", ".join(f"`{o}`" for o in self.options)


@dataclass(frozen=True)
class _IsA:
    """A value of one Python type (`kind`), described as `what`."""

    kind: ClassVar[type] = object
    what: ClassVar[str] = ""

    def __call__(self, name: str, v: Any) -> None:
        if not isinstance(v, self.kind):
            raise ConfigError(f"{name}={v!r} must be {self.what}")

    def words(self) -> str:
        return self.what


class Bool(_IsA):
    """True or False."""

    kind, what = bool, "True or False"


class Text(_IsA):
    """A string."""

    kind, what = str, "a string"


@dataclass(frozen=True)
class Maybe:
    """None, or a value that passes `inner`."""

    inner: Callable

    def __call__(self, name: str, v: Any) -> None:
        if v is not None:
            self.inner(name, v)

    def words(self) -> str:
        return f"None or {domain_words(self.inner)}"


@dataclass(frozen=True)
class ListOf:
    """A list (or tuple) of min_len to max_len items, each passing `item`."""

    item: Callable
    min_len: int = 1
    max_len: int = MAX_UNITS

    def __call__(self, name: str, v: Any) -> None:
        if not isinstance(v, (list, tuple)) or not self.min_len <= len(v) <= self.max_len:
            raise ConfigError(f"{name}={v!r:.200} must be a list of {self.min_len} to {self.max_len} items")
        for i, x in enumerate(v):
            self.item(f"{name}[{i}]", x)

    def words(self) -> str:
        n = f"{self.min_len}" if self.min_len == self.max_len else f"{self.min_len} to {_num(self.max_len)}"
        return f"list of {n} items, each {domain_words(self.item)}"


@dataclass(frozen=True)
class DictOf:
    """A dict whose keys pass `key` and whose values pass `value`."""

    key: Callable
    value: Callable

    def __call__(self, name: str, v: Any) -> None:
        if not isinstance(v, dict):
            raise ConfigError(f"{name}={v!r:.200} must be a dict")
        for k, x in v.items():
            self.key(f"{name} key {k!r}", k)
            self.value(f"{name}[{k!r}]", x)

    def words(self) -> str:
        return f"dict from {domain_words(self.key)} to {domain_words(self.value)}"


class Mapping(_IsA):
    """A dict (its keys and values checked by the study's `check`, which knows what they mean)."""

    kind, what = dict, "a dict"

    def words(self) -> str:
        return "a dict (keys and values checked by the study's rules)"


@dataclass(frozen=True)
class Threads:
    """torch's CPU threads: a positive integer or "auto" (every core)."""

    def __call__(self, name: str, v: Any) -> None:
        if v != "auto":
            check_int(name, v, 1, MAX_THREADS)

    def words(self) -> str:
        return f'integer in [1, {MAX_THREADS}] or "auto"'


def _num(x, none: str = "") -> str:
    """A bound in words (10000 as 10,000; None as `none`, default inf)."""
    if x is None:
        return none or "inf"
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def domain_words(check: Callable | None) -> str:
    """A parameter's domain in words (docs/parameters.md): the check's `words()`, else its docstring's first line."""
    if check is None:
        return "unchecked"
    if hasattr(check, "words"):
        return check.words()
    doc = (getattr(check, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else getattr(check, "__name__", "checked by the study")


