"""lmc_core: linear mode connectivity of transformers, reproducible and fast.

The public API; notebooks call the study modules in lmc_core.studies.
"""
from .barrier import DEFINITIONS as BARRIER_DEFINITIONS
from .barrier import STABILITY_THRESHOLD_PCT, all_barriers, instability, is_stable
from .config import (MODEL_PRESETS, ConfigError, DataConfig, ModelConfig, RunSpec, Seeds, TrainConfig,
                     config_hash, model_preset)
from .data import Corpus, DataUnavailableError, LMBatches, Vocab, load_corpus
from .ensemble import copy_state, extract, model_from_state, select_state, stack, stack_states
from .interpolate import EvalResult, alpha_grid, evaluate_state, interpolate_states, interpolation_curve
from .io import CorruptFileError
from .models import DropoutSource, TransformerLM
from .runs import RunStore, StoredRun
from .train import TrainingDiverged, TrainResult, resolve_device, train_copies

__version__ = "0.1.0"

__all__ = [
    "BARRIER_DEFINITIONS", "STABILITY_THRESHOLD_PCT", "all_barriers", "instability", "is_stable",
    "MODEL_PRESETS", "ConfigError", "DataConfig", "ModelConfig", "RunSpec", "Seeds", "TrainConfig",
    "config_hash", "model_preset", "Corpus", "DataUnavailableError", "LMBatches", "Vocab", "load_corpus",
    "copy_state", "extract", "model_from_state", "select_state", "stack", "stack_states", "EvalResult",
    "alpha_grid", "evaluate_state", "interpolate_states", "interpolation_curve", "CorruptFileError",
    "DropoutSource", "TransformerLM", "RunStore", "StoredRun", "TrainingDiverged", "TrainResult",
    "resolve_device", "train_copies",
]
