"""lmc_core: linear mode connectivity of transformers, reproducible and fast.

The public API; notebooks call the study modules in lmc_core.studies. For your own models (any nn.Module, or
Hugging Face checkpoints from local folders):

    path = linear_path(model_a, model_b, (x, y))          # curve, barriers under every definition, verdict
    aligned = align_models(model_a, model_b, x)           # B's units permuted to match A (checked spec)
    after = linear_path(model_a, aligned.model, (x, y))
    lm = load_hf("path/to/gpt2-checkpoint")               # an lmc_core model, checked against transformers
"""
from .analysis.barrier import DEFINITIONS as BARRIER_DEFINITIONS
from .analysis.barrier import STABILITY_THRESHOLD_PCT, all_barriers, instability, is_stable
from .align import activation_matching, apply_permutation, weight_matching
from .align.auto import ModuleSpec, UnsupportedModelError, auto_spec
from .align.check import NonFiniteWeightsError, SpecCheck, SpecError, check_spec
from .analysis.align_models import align_models
from .analysis.alignment_result import Alignment
from .analysis.path_result import PathResult, judge_paths
from .analysis.paths import linear_path, path_outputs
from .models.convert import ConversionError
from .models.hf import load_hf
from .analysis.cluster import spectral_clusters
from .config import (MODEL_PRESETS, ConfigError, CopySettings, DataConfig, ModelConfig, RunSpec, Seeds, TrainConfig,
                     config_hash, model_preset)
from .data import Corpus, DataUnavailableError, Vocab, load_corpus
from .ensemble import copy_state, extract, model_from_state, select_state, stack, stack_states
from .analysis.interpolate import EvalResult, alpha_grid, evaluate_state, interpolate_states, interpolation_curve
from .runs.dispatch import Job, Recipe
from .families import Family, family_of
from .families.lm import transformer_spec
from .families.mlp import mlp_spec
from .runs.io import CorruptFileError
from .analysis.landscape import barrier_matrix, ece, plane, sharpness
from .nn import DropoutSource
from .models import EncoderClassifier, EncoderConfig, MLPConfig, StackedMLP, TransformerLM
from .runs.store import RunStore, StoredRun
from .train import TrainingDiverged, TrainResult, TrainState, resolve_device, train_copies

__version__ = "0.1.0"

__all__ = [
    "linear_path", "path_outputs", "PathResult", "judge_paths", "align_models", "Alignment", "auto_spec", "ModuleSpec",
    "UnsupportedModelError", "check_spec", "SpecCheck", "SpecError", "NonFiniteWeightsError", "load_hf",
    "ConversionError",
    "activation_matching", "apply_permutation", "mlp_spec", "transformer_spec", "weight_matching",
    "spectral_clusters", "CopySettings", "Job", "Recipe", "Family", "family_of", "barrier_matrix", "ece",
    "plane", "sharpness", "EncoderClassifier", "EncoderConfig", "MLPConfig", "StackedMLP",
    "BARRIER_DEFINITIONS", "STABILITY_THRESHOLD_PCT", "all_barriers", "instability", "is_stable",
    "MODEL_PRESETS", "ConfigError", "DataConfig", "ModelConfig", "RunSpec", "Seeds", "TrainConfig",
    "config_hash", "model_preset", "Corpus", "DataUnavailableError", "Vocab", "load_corpus",
    "copy_state", "extract", "model_from_state", "select_state", "stack", "stack_states", "EvalResult",
    "alpha_grid", "evaluate_state", "interpolate_states", "interpolation_curve", "CorruptFileError",
    "DropoutSource", "TransformerLM", "RunStore", "StoredRun", "TrainingDiverged", "TrainResult",
    "resolve_device", "train_copies", "TrainState",
]
