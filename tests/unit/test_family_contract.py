"""The Family contract, checked for every registered family (the package's and the test-only toy family).

A new family is tested here as soon as it is in the registry: nothing in this file names a family.
"""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lmc_core import rng
from lmc_core.align import apply_permutation, random_permutation
from lmc_core.align.orthogonal import apply_residual_map, random_invertible, random_orthogonal
from lmc_core.analysis.interpolate import interpolate_states
from lmc_core.config import RunSpec, Seeds, TrainConfig, config_hash, to_dict
from lmc_core.ensemble import copy_state, extract, stack
from lmc_core.families import ABILITIES, FAMILIES, FamilyAbilityError, StackedModel, family_of, spec_from_dict
from lmc_core.train import train_copies

FAMS = {f.name: f for f in FAMILIES}


def logits(fam, cfg, state, examples):
    """Eval-mode logits [K, N, C] of a stacked state on the family's example batch."""
    model = fam.model_from_state(cfg, state).eval()
    batch = {n: t[None] for n, t in examples.tensors.items()}
    with torch.no_grad():
        return fam.outputs(model, batch, None)[0]


@pytest.fixture(params=sorted(FAMS), ids=str)
def family(request):
    return FAMS[request.param]


def test_the_toy_family_is_registered_with_one_line():
    assert "toy-bag" in FAMS  # tests/conftest.py registers it; this file never names it elsewhere


def test_model_follows_the_stacked_model_contract(family):
    ex = family.example()
    ex.cfg.validate()
    ex.data.validate()
    model = family.build(ex.cfg, 3)
    assert isinstance(model, StackedModel) and model.k == 3 and model.cfg == ex.cfg
    assert family_of(ex.cfg) is family
    assert all(t.shape[0] == 3 for t in model.state_dict().values())
    out, targets = family.outputs(family.model_from_state(ex.cfg, family.init(ex.cfg, [1, 2, 3])).eval(),
                                  {n: t[None] for n, t in ex.examples.tensors.items()})
    assert out.dim() == 3 and out.shape[0] == 3 and out.shape[2] == family.n_classes(ex.cfg)
    assert targets.shape[-1] == out.shape[1]


def test_equal_seeds_give_equal_copies_and_copy_k_equals_it_built_alone(family):
    ex = family.example()
    state = family.init(ex.cfg, [5, 7, 5])
    for n, t in state.items():
        assert torch.equal(t[0], t[2]), n
    alone = family.init(ex.cfg, [7])
    for n, t in alone.items():
        assert torch.equal(state[n][1:2], t), n
    # the ensemble computes copy k exactly as copy k computes alone
    torch.testing.assert_close(logits(family, ex.cfg, state, ex.examples)[1:2],
                               logits(family, ex.cfg, alone, ex.examples), rtol=1e-5, atol=1e-6)


def test_extract_and_stack_are_inverse(family):
    ex = family.example()
    model = family.model_from_state(ex.cfg, family.init(ex.cfg, [1, 2]))
    again = stack([extract(model, 0), extract(model, 1)])
    for n, t in model.state_dict().items():
        assert torch.equal(again.state_dict()[n], t), n


def test_spec_json_round_trips_with_a_stable_hash(family):
    ex = family.example()
    spec = RunSpec(model=ex.cfg, data=ex.data, train=TrainConfig(steps=3, batch_size=4, lr=0.1),
                   seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)))
    text = json.dumps(to_dict(spec), sort_keys=True)
    back = spec_from_dict(json.loads(text))
    assert back == spec and config_hash(back) == config_hash(spec)
    assert config_hash(replace(spec, seeds=(Seeds(1, 2, 3),))) != config_hash(spec)


def test_interpolation_endpoints_reproduce_the_models(family):
    ex = family.example()
    state = family.init(ex.cfg, [1, 2])
    a, b = copy_state(state, 0), copy_state(state, 1)
    path = interpolate_states(a, b, [0.0, 0.5, 1.0])
    z = logits(family, ex.cfg, path, ex.examples)
    assert torch.equal(z[0], logits(family, ex.cfg, a, ex.examples)[0])
    assert torch.equal(z[2], logits(family, ex.cfg, b, ex.examples)[0])


def test_a_random_permutation_from_the_spec_keeps_the_logits(family):
    ex = family.example()
    if not family.supports("perm_spec"):
        with pytest.raises(FamilyAbilityError, match=family.name):
            family.perm_spec(ex.cfg)
        return
    spec = family.perm_spec(ex.cfg)
    state = family.init(ex.cfg, [3])
    with torch.no_grad():  # break the symmetric initial values (unit LayerNorm weights, zero biases)
        g = rng.generator(11)
        state = {n: t + 0.05 * torch.randn(t.shape, generator=g) for n, t in state.items()}
    spec.check(state)
    permuted = apply_permutation(state, spec, random_permutation(spec, rng.generator(4)))
    assert any(not torch.equal(permuted[n], state[n]) for n in state)
    torch.testing.assert_close(logits(family, ex.cfg, permuted, ex.examples),
                               logits(family, ex.cfg, state, ex.examples), rtol=1e-4, atol=1e-5)


def test_a_residual_map_of_the_family_s_group_keeps_the_logits(family):
    """The residual form (e.g. LayerNorm folded into RMSNorm) computes the same logits, and so does the model after
    a random map of the declared group (orthogonal, or invertible) of its residual stream: fp32 tolerance."""
    ex = family.example()
    state = family.init(ex.cfg, [3, 4])
    with torch.no_grad():  # break the symmetric initial values (unit LayerNorm gains, zero biases)
        g = rng.generator(12)
        state = {n: t + 0.05 * torch.randn(t.shape, generator=g) for n, t in state.items()}
    if not family.supports("residual_maps"):
        with pytest.raises(FamilyAbilityError, match=family.name):
            family.residual_maps(ex.cfg, state)
        return
    cfg, folded, spec = family.residual_maps(ex.cfg, state)
    spec.check(folded)
    family.perm_spec(cfg).check(folded)  # permutations still apply in the residual form
    reference = logits(family, ex.cfg, state, ex.examples)
    torch.testing.assert_close(logits(family, cfg, folded, ex.examples), reference, rtol=1e-4, atol=1e-5)
    draw = random_orthogonal if spec.group == "orthogonal" else random_invertible
    mapped = apply_residual_map(folded, spec, draw(spec.size, rng.generator(5)))
    assert all(not torch.allclose(mapped[ax.param], folded[ax.param]) for ax in spec.places)
    torch.testing.assert_close(logits(family, cfg, mapped, ex.examples), reference, rtol=1e-4, atol=1e-5)
    if spec.group == "orthogonal":  # an orthogonal-only stream rejects a map that is not orthogonal
        with pytest.raises(ValueError, match="orthogonal"):
            apply_residual_map(folded, spec, random_invertible(spec.size, rng.generator(6)))


def test_optional_abilities_are_declared_not_guessed(family):
    ex = family.example()
    state = copy_state(family.init(ex.cfg, [1]), 0)
    inputs = ex.inputs if ex.inputs is not None else next(iter(ex.examples.tensors.values()))
    if family.supports("activations"):
        feats = family.activations(ex.cfg, state, inputs)
        assert set(feats) == {n for n, _, _ in family.perm_spec(ex.cfg).flat_groups()}
    else:
        with pytest.raises(FamilyAbilityError, match=family.name):
            family.activations(ex.cfg, state, inputs)
    if family.supports("hidden_units"):
        hidden = family.hidden_units(ex.cfg, state, inputs)
        assert hidden and all(h.dim() == 3 and h.shape[0] == 1 for h in hidden)
    with pytest.raises(ValueError, match="unknown ability"):
        family.supports("flying")
    assert set(ABILITIES) == {"perm_spec", "activations", "hidden_units", "residual_maps"}


def test_training_is_deterministic_and_copy_k_of_an_ensemble_trains_as_alone(family):
    ex = family.example()
    torch.set_num_threads(1)
    spec = RunSpec(model=ex.cfg, data=ex.data,
                   train=TrainConfig(steps=3, batch_size=4, optimizer="adamw", lr=1e-2, schedule="constant"),
                   seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)))
    one = train_copies(spec, ex.examples, "cpu", progress=False)
    two = train_copies(spec, ex.examples, "cpu", progress=False)
    alone = train_copies(replace(spec, seeds=spec.seeds[1:]), ex.examples, "cpu", progress=False)
    for n, t in one.state.items():
        assert torch.equal(t, two.state[n]), n
    for n, t in one.state.items():
        torch.testing.assert_close(t[1:2], alone.state[n], rtol=1e-5, atol=1e-6)
    assert not all(torch.equal(t[0], t[1]) for t in one.state.values())
