"""Model families behind one seam (see base.py): the LM, the MLP, the encoder classifier, the grokking
transformer. `family_of(cfg)` finds the family of a model config."""
from __future__ import annotations

from .base import EvalResult, Family, fisher_penalty, sampled_labels
from .lm import LMFamily

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make a family known by its name and its config type."""
    FAMILIES[family.name] = family
    return family


register(LMFamily())
from .mlp import MLPFamily  # noqa: E402

register(MLPFamily())
from .seqcls import SeqClassConfig, SeqClassFamily  # noqa: E402

register(SeqClassFamily())
from .encoder import EncoderFamily, TextDataConfig  # noqa: E402

register(EncoderFamily())


def family_of(cfg) -> Family:
    """The family whose config type `cfg` is."""
    for fam in FAMILIES.values():
        if type(cfg) is fam.config_type:
            return fam
    raise TypeError(f"no model family for config type {type(cfg).__name__}; known: "
                    f"{[f.config_type.__name__ for f in FAMILIES.values()]}")


def get(name: str) -> Family:
    """A family by name."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["EncoderFamily", "EvalResult", "FAMILIES", "Family", "TextDataConfig", "LMFamily", "MLPFamily", "SeqClassConfig", "SeqClassFamily", "family_of", "fisher_penalty", "get", "register",
           "sampled_labels"]
