"""lmc_core: linear mode connectivity of transformers, reproducible and fast.

The public API (below) is imported lazily: `import lmc_core` is instant (the command line's `--help`
does not wait for torch), and `from lmc_core import train_copies` imports what that name needs.
Notebooks call the study modules in lmc_core.studies. For your own models (any nn.Module, or Hugging Face
checkpoints from local folders):

    path = linear_path(model_a, model_b, (x, y))          # curve, barriers under every definition, verdict
    aligned = align_models(model_a, model_b, x)           # B's units permuted to match A (checked spec)
    after = linear_path(model_a, aligned.model, (x, y))
    lm = load_hf("path/to/gpt2-checkpoint")               # an lmc_core model, checked against transformers
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_API: dict[str, tuple[str, str]] = {
    "BARRIER_DEFINITIONS": ("analysis.barrier", "DEFINITIONS"),
    **{n: ("analysis.barrier", n) for n in ("STABILITY_THRESHOLD_PCT", "all_barriers", "instability", "is_stable")},
    **{n: ("align", n) for n in ("activation_matching", "apply_permutation", "weight_matching")},
    "spectral_clusters": ("analysis.cluster", "spectral_clusters"),
    **{n: ("config", n) for n in ("MODEL_PRESETS", "ConfigError", "CopySettings", "DataConfig", "ModelConfig", "RunSpec",
                                  "Seeds", "TrainConfig", "config_hash", "model_preset")},
    **{n: ("data", n) for n in ("Corpus", "DataUnavailableError", "Vocab", "load_corpus")},
    **{n: ("ensemble", n) for n in ("copy_state", "extract", "model_from_state", "select_state", "stack",
                                    "stack_states")},
    **{n: ("analysis.interpolate", n) for n in ("alpha_grid", "evaluate_state", "interpolate_states",
                                                "interpolation_curve")},
    "EvalResult": ("families", "EvalResult"),
    **{n: ("runs.dispatch", n) for n in ("Job", "Recipe", "dispatch")},
    **{n: ("families", n) for n in ("Family", "family_of")},
    "transformer_spec": ("families.lm", "transformer_spec"),
    "mlp_spec": ("families.mlp", "mlp_spec"),
    "CorruptFileError": ("files", "CorruptFileError"),
    **{n: ("analysis.landscape", n) for n in ("barrier_matrix", "ece", "plane", "sharpness")},
    "DropoutSource": ("nn", "DropoutSource"),
    **{n: ("models", n) for n in ("EncoderClassifier", "EncoderConfig", "MLPConfig", "StackedMLP", "TransformerLM")},
    **{n: ("runs.store", n) for n in ("RunStore", "StoredRun")},
    **{n: ("train", n) for n in ("TrainingDiverged", "TrainResult", "TrainState", "resolve_device", "train_copies")},
    # your own models: any nn.Module, Hugging Face checkpoints from local folders
    **{n: ("analysis.paths", n) for n in ("linear_path", "path_outputs")},
    **{n: ("analysis.path_result", n) for n in ("PathResult", "judge_paths")},
    "align_models": ("analysis.align_models", "align_models"),
    "Alignment": ("analysis.alignment_result", "Alignment"),
    **{n: ("align.auto", n) for n in ("ModuleSpec", "UnsupportedModelError", "auto_spec")},
    **{n: ("align.check", n) for n in ("NonFiniteWeightsError", "SpecCheck", "SpecError", "check_spec")},
    "ConversionError": ("models.convert", "ConversionError"),
    "load_hf": ("models.hf", "load_hf"),
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'lmc_core' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
