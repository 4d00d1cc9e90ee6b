"""Model families behind one seam (base.py): the LM, the MLP, the sequence classifier (grokking), the encoder
classifier, the masked LM (notebook 05's pretraining). `family_of(cfg)` finds the family of a model config; registry.FAMILIES lists them."""
from __future__ import annotations

from .base import ABILITIES, EvalResult, Family, FamilyAbilityError, FamilyExample, Features, StackedModel
from .encoder import EncoderFamily, TextDataConfig
from .lm import LMFamily
from .mlm import MaskedLMFamily
from .mlp import MLPFamily
from .registry import FAMILIES, config_types, family_of, get, register, spec_from_dict
from .seqcls import SeqClassConfig, SeqClassFamily

__all__ = ["ABILITIES", "EncoderFamily", "EvalResult", "FAMILIES", "Family", "FamilyAbilityError", "FamilyExample", "Features",
           "LMFamily", "MLPFamily", "MaskedLMFamily", "SeqClassConfig", "SeqClassFamily", "StackedModel", "TextDataConfig",
           "config_types", "family_of", "get", "register", "spec_from_dict"]
