"""The list of model families, and what is derived from it: finding a config's family and rebuilding a
RunSpec from its stored `spec.json` (config types are known through the families that use them).

A new family is one line in FAMILIES (see base.py for the rest of what a family is).
"""
from __future__ import annotations

import torch

from ..config import ConfigError, CopySettings, DataConfig, ModelConfig, RunSpec, Seeds, TrainConfig, from_dict
from .base import Family
from .encoder import EncoderFamily
from .lm import LMFamily
from .mlm import MaskedLMFamily
from .mlp import MLPFamily
from .seqcls import SeqClassFamily

FAMILIES: list[Family] = [
    LMFamily(),
    MLPFamily(),
    SeqClassFamily(),
    EncoderFamily(),
    MaskedLMFamily(),
]


def register(family: Family) -> Family:
    """Add a family at run time (a family of your own outside the package); its config types must be new."""
    if not isinstance(family, Family):
        raise TypeError(f"register takes a Family instance, got {type(family).__name__}")
    known = config_types()
    for t in (family.config_type, family.data_type):
        if t.__name__ in known and known[t.__name__] is not t:
            raise ConfigError(f"config type name {t.__name__!r} of family {family.name!r} is already used by "
                              "another family; class names identify configs in spec.json, choose another")
    if any(f.name == family.name for f in FAMILIES):
        raise ConfigError(f"a model family named {family.name!r} is already registered")
    FAMILIES.append(family)
    return family


def family_of(cfg) -> Family:
    """The family whose config type `cfg` is (exact type: a subclass config is its own family's)."""
    for fam in FAMILIES:
        if type(cfg) is fam.config_type:
            return fam
    if isinstance(cfg, torch.nn.Module):
        raise TypeError(f"{type(cfg).__name__} is a model, not an lmc_core config: for two models of any architecture "
                        "use lmc_core.linear_path(model_a, model_b, data) and lmc_core.align_models(model_a, model_b, "
                        "sample)")
    raise TypeError(f"no model family for config type {type(cfg).__name__}; known: "
                    f"{[f.config_type.__name__ for f in FAMILIES]}")


def get(name: str) -> Family:
    """A family by name."""
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise KeyError(f"unknown model family {name!r}; choose one of {sorted(f.name for f in FAMILIES)}")


def config_types() -> dict[str, type]:
    """Every registered family's model and data config types, by class name (as spec.json names them)."""
    out: dict[str, type] = {}
    for fam in FAMILIES:
        out.setdefault(fam.config_type.__name__, fam.config_type)
        out.setdefault(fam.data_type.__name__, fam.data_type)
    return out


def spec_from_dict(d: dict) -> RunSpec:
    """Inverse of config.to_dict for a RunSpec (spec.json files without type names are LM runs)."""
    types = config_types()

    def typed(part: dict, default: type):
        name = part.get("__type__", default.__name__)
        if name not in types:
            raise ConfigError(f"spec.json names an unknown config type {name!r}; known: {sorted(types)}")
        return from_dict(types[name], part)

    return RunSpec(model=typed(d["model"], ModelConfig), data=typed(d["data"], DataConfig),
                   train=from_dict(TrainConfig, d["train"]), seeds=tuple(Seeds(**s) for s in d["seeds"]),
                   per_copy=tuple(CopySettings(**c) for c in d.get("per_copy", ())),
                   init_from=d.get("init_from", ""))
