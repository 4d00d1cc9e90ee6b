"""align_models for lmc_core's own models (K=1 models of a registered family): the family's spec and activations."""
from __future__ import annotations

import torch

from ..align import activation_matching, apply_permutation, match_weights
from ..align.auto import ModuleSpec
from ..align.check import check_spec
from ..families import family_of
from . import path_data as D
from .alignment_result import Alignment


def family_alignment(cfg, model_a, model_b, sample, method: str, seed: int, max_sweeps: int, spec=None):
    """Alignment of two K=1 family models on `sample` (the family's inputs: tokens [B, T], x [N, d_in], ...) with
    the family's spec, or `spec` (a PermutationSpec over the family's stacked parameters)."""
    fam = family_of(cfg)
    if model_b.cfg != cfg:
        raise ValueError("model_a and model_b have different configs: alignment needs one architecture")
    spec = spec if spec is not None else fam.perm_spec(cfg)  # FamilyAbilityError names a family without one
    inputs = sample[0] if isinstance(sample, (tuple, list)) else sample
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"sample: give the {fam.name!r} family's inputs as a tensor (token ids [B, T] for a language "
                        "model, x [N, d_in] for the MLP)")
    a = {n: t.detach() for n, t in model_a.state_dict().items()}
    b = {n: t.detach() for n, t in model_b.state_dict().items()}

    def forward(state):
        model = fam.model_from_state(cfg, state, inputs.device).eval()
        return D.logits_of(model(inputs[None]))

    chk = check_spec(spec, a, forward, seed=seed)
    if method == "weight":
        perms, log = match_weights(spec, a, b, seed=seed, max_sweeps=max_sweeps)
    else:
        perms, log = activation_matching(spec, fam.activations(cfg, a, inputs), fam.activations(cfg, b, inputs))
    permuted = apply_permutation(b, spec, perms)
    with torch.no_grad():
        moved = float((forward(permuted).double() - forward(b).double()).abs().max())
    model = fam.model_from_state(cfg, permuted, next(model_b.parameters()).device)
    model.train(model_b.training)
    return Alignment(model, perms, ModuleSpec(spec), method, log, chk, moved, list(spec.notes))
