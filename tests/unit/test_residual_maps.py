"""Residual-stream maps beyond permutations: LayerNorm folded into RMSNorm keeps the function, orthogonal (and, without
normalisation, invertible) maps of the stream keep it, planted maps are recovered, learned alignment never returns
something worse than its start."""
import numpy as np
import pytest
import torch

from lmc_core import rng
from lmc_core.align import RESIDUAL, apply_permutation, random_permutation
from lmc_core.align.learned import learned_alignment, sinkhorn
from lmc_core.align.orthogonal import (ResidualSpec, apply_residual_map, least_squares_map, nearest_orthogonal,
                                       permutation_matrix, procrustes, random_invertible, random_orthogonal,
                                       residual_alignment, residual_features, without_residual)
from lmc_core.config import ConfigError, model_preset
from lmc_core.ensemble import copy_state
from lmc_core.families import SeqClassConfig, family_of
from lmc_core.families.lm import fold_layernorm, residual_places

# GPT-2 style: pre-norm LayerNorm, tied embeddings, learned positions
LM = model_preset("tinygpt", vocab_size=30, d_model=16, n_heads=2, n_layers=2, d_ff=24, context=6)
# Nanda et al.'s grokking transformer: no LayerNorm, untied head
GROK = SeqClassConfig(vocab_size=12, n_out=11, d_model=16, n_heads=2, d_ff=24)


def noisy(cfg, seed):
    """A K=1 state with every tensor perturbed (unit gains and zero biases would hide misplaced maps)."""
    fam = family_of(cfg)
    st = fam.init(cfg, [seed])
    g = rng.generator(seed, 77)
    return {n: t + 0.1 * torch.randn(t.shape, generator=g) for n, t in st.items()}


def tokens(cfg, n=40):
    g = rng.generator(3, 5)
    if isinstance(cfg, SeqClassConfig):
        return torch.randint(0, cfg.vocab_size, (n, cfg.context), generator=g)
    return torch.randint(0, cfg.vocab_size, (n, cfg.context), generator=g)


@torch.no_grad()
def logits(cfg, state, x):
    fam = family_of(cfg)
    m = fam.model_from_state(cfg, state).eval()
    return m(x[None]) if not isinstance(cfg, SeqClassConfig) else fam.outputs(m, {"tokens": x[None],
                                                                                   "labels": x[None, :, 0]})[0]


def test_folding_layernorm_keeps_the_logits_and_removes_every_norm_parameter():
    st = noisy(LM, 1)
    cfg, folded = fold_layernorm(LM, st)
    assert cfg.norm == "rms" and not cfg.tie_embeddings
    assert not any(".ln" in n or n.startswith("ln_f") for n in folded)
    x = tokens(LM)
    torch.testing.assert_close(logits(cfg, folded, x), logits(LM, st, x), rtol=1e-4, atol=1e-5)
    # every write into the stream is centred, so the stream is mean-zero (where LayerNorm = RMSNorm)
    assert folded["tok_emb"].mean(-1).abs().max() < 1e-6 and folded["layers.1.ff2.bias"].mean(-1).abs().max() < 1e-6


def test_without_folding_an_orthogonal_map_changes_a_layernorm_model():
    """The control that makes the folding necessary: mapping the LayerNorm model's own places breaks it."""
    st = noisy(LM, 1)
    writes, reads = residual_places(LM)
    spec = ResidualSpec(LM.d_model, tuple(writes), tuple(reads))
    q = random_orthogonal(LM.d_model, rng.generator(2))
    wrong = apply_residual_map(st, spec, q)  # the same places, but LayerNorm still has its gain and mean
    x = tokens(LM)
    assert (logits(LM, wrong, x) - logits(LM, st, x)).abs().max() > 1e-2


def test_a_permutation_matrix_acts_like_the_residual_permutation():
    fam = family_of(LM)
    cfg, folded, rspec = fam.residual_maps(LM, noisy(LM, 1))
    pspec = fam.perm_spec(cfg)
    perms = random_permutation(pspec, rng.generator(4))
    only_res = {g.name: (perms[g.name] if g.name == RESIDUAL else None) for g in pspec.groups}
    by_index = apply_permutation(folded, type(pspec)((pspec[RESIDUAL],)), {RESIDUAL: only_res[RESIDUAL]})
    by_matrix = apply_residual_map(folded, rspec, permutation_matrix(np.asarray(perms[RESIDUAL])))
    for n in folded:
        torch.testing.assert_close(by_matrix[n], by_index[n], rtol=0, atol=1e-6)


def mean_fixing_orthogonal(d, generator):
    """A random orthogonal map of the mean-zero subspace (it fixes the direction 1/sqrt(d)): how the streams of two
    folded models can differ, since folding centres every write and leaves the mean direction unused in both."""
    n = torch.full((d, 1), d ** -0.5, dtype=torch.float64)
    basis = torch.linalg.qr(torch.cat([n, torch.eye(d, dtype=torch.float64)[:, : d - 1]], 1))[0]
    return basis @ torch.block_diag(torch.ones(1, 1, dtype=torch.float64), random_orthogonal(d - 1, generator)) @ basis.T


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_a_planted_orthogonal_map_and_permutations_are_recovered(method):
    """B = A with its residual stream rotated and its heads and MLP units permuted: alignment returns A exactly.
    The rotation fixes the stream's mean direction, as between any two folded models: with an arbitrary one, B's
    unused direction is not A's and the activations say nothing about how to map it (it used to pass by the
    SVD's luck; the convention is tested in test_faults_align)."""
    fam = family_of(LM)
    cfg, a, rspec = fam.residual_maps(LM, noisy(LM, 1))
    pspec = fam.perm_spec(cfg)
    rest = without_residual(pspec)
    q = mean_fixing_orthogonal(LM.d_model, rng.generator(9))
    b = apply_permutation(apply_residual_map(a, rspec, q), rest, random_permutation(rest, rng.generator(8)))
    x = tokens(LM)
    torch.testing.assert_close(logits(cfg, b, x), logits(cfg, a, x), rtol=1e-4, atol=1e-5)
    feats = None
    if method == "activations":
        collect = lambda s: fam.activations(cfg, s, x)  # noqa: E731
        feats = (residual_features(collect, a), residual_features(collect, b))
    out, info = residual_alignment(pspec, rspec, a, b, features=feats)
    assert info.method == method
    torch.testing.assert_close(info.map, q.T, rtol=0, atol=1e-6)  # the inverse of the planted rotation
    for n in a:
        torch.testing.assert_close(out[n], a[n], rtol=0, atol=1e-5)


def test_a_planted_invertible_map_of_a_normalisation_free_model_is_recovered():
    fam = family_of(GROK)
    cfg, a, rspec = fam.residual_maps(GROK, noisy(GROK, 2))
    assert rspec.group == "invertible" and cfg == GROK
    m = random_invertible(GROK.d_model, rng.generator(3), condition=10.0)
    b = apply_residual_map(a, rspec, m)
    x = tokens(GROK, 200)
    torch.testing.assert_close(logits(cfg, b, x), logits(cfg, a, x), rtol=1e-4, atol=1e-5)
    collect = lambda s: fam.activations(cfg, s, x)  # noqa: E731
    out, info = residual_alignment(fam.perm_spec(cfg), rspec, a, b,
                                   features=(residual_features(collect, a), residual_features(collect, b)))
    torch.testing.assert_close(info.map @ m, torch.eye(GROK.d_model, dtype=torch.float64), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="activations"):
        residual_alignment(fam.perm_spec(cfg), rspec, a, b)  # no weight objective for invertible maps


def test_closed_forms_and_their_errors():
    g = rng.generator(1)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    q = random_orthogonal(6, g)
    torch.testing.assert_close(procrustes(x @ q, x), q.T)
    m = random_invertible(6, g)
    torch.testing.assert_close(least_squares_map(x @ m, x), torch.linalg.inv(m))
    with pytest.raises(ValueError, match="span 3 of 6"):
        least_squares_map(x[:, :3] @ torch.randn(3, 6, generator=g, dtype=torch.float64), x)
    torch.testing.assert_close(nearest_orthogonal(q * 1.0), q)
    spec = ResidualSpec(6, (), (), "orthogonal")
    with pytest.raises(ValueError, match="group"):
        ResidualSpec(6, (), (), "affine")
    with pytest.raises(ValueError, match=r"\[6, 6\]"):
        apply_residual_map({}, spec, torch.eye(5))


def test_models_without_a_residual_symmetry_say_what_to_change():
    fam = family_of(LM)
    with pytest.raises(ConfigError, match="positions='learned'"):
        fam.residual_maps(model_preset("ptb-transformer", vocab_size=30, d_model=16, d_ff=24, context=6), {})
    post = model_preset("ptb-transformer", vocab_size=30, d_model=16, d_ff=24, context=6, positions="learned")
    with pytest.raises(ConfigError, match="prenorm"):
        fam.residual_maps(post, {})


def test_sinkhorn_is_doubly_stochastic():
    p = sinkhorn(torch.randn(7, 7, generator=rng.generator(2), dtype=torch.float64), iters=200)
    torch.testing.assert_close(p.sum(0), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(p.sum(1), torch.ones(7, dtype=torch.float64))


def test_learned_alignment_lowers_the_midpoint_loss_and_keeps_b_s_function():
    """Two independently initialised normalisation-free models: learning the residual map and the MLP
    permutation from the identity lowers the midpoint loss on held-out batches; T(B) is still B's function."""
    fam = family_of(GROK)
    a, b = copy_state(noisy(GROK, 1), 0), copy_state(noisy(GROK, 2), 0)
    cfg, a, rspec = fam.residual_maps(GROK, a)
    _, b, _ = fam.residual_maps(GROK, b)
    x = tokens(GROK, 64)
    y = (x[:, 0] + x[:, 1]) % GROK.n_out
    batch = {"tokens": x[None], "labels": y[None]}
    loss = fam.state_loss_fn(cfg)
    out, info = learned_alignment(a, b, loss, iter([batch] * 60), [batch], pspec=fam.perm_spec(cfg), rspec=rspec,
                                  steps=60, lr=0.05)
    assert not info.kept_start and info.heldout_end < info.heldout_start
    assert len(info.losses) == 60 and set(info.moved) == {"layers.0.ff"}
    torch.testing.assert_close(logits(cfg, out, x), logits(cfg, b, x), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="nothing to learn"):
        learned_alignment(a, b, loss, [batch], [batch])


def test_learned_alignment_starts_from_the_closed_form_with_the_lower_midpoint_loss(monkeypatch):
    import lmc_core.align.learned as L

    a = {"w": torch.zeros(1, 3)}
    near, far = {"w": torch.ones(1, 3)}, {"w": torch.full((1, 3), 3.0)}
    loss = lambda state, batch: (state["w"] ** 2).sum(-1)  # noqa: E731  midpoint loss grows with the distance
    monkeypatch.setattr(L, "learned_alignment", lambda a, b, *args, **kw: (b, "info"))
    out, info, start = L.learned_from_best(a, {"far": far, "near": near}, loss, iter([]), [{}])
    assert start == "near" and out is near and info == "info"
    tie, _, first = L.learned_from_best(a, {"x": near, "y": {"w": torch.ones(1, 3)}}, loss, iter([]), [{}])
    assert first == "x"  # a tie keeps the first candidate


def test_the_residual_fits_of_a_model_with_itself():
    """residual_ends' fits (1 - |X_B M - X_A|^2 / |X_A|^2): B = A fits 1 with no map (the identity, issue 27), after
    weight matching's residual permutation and after the Procrustes rotation."""
    from lmc_core.analysis.pair_alignment import Learning, permutation_ends, residual_ends

    fam, a = family_of(LM), noisy(LM, 1)
    x = tokens(LM)
    windows = torch.cat([x, x[:, :1]], 1)  # context + 1 tokens per window
    learn = Learning(2, 1e-2, 4, 1, False)
    _, info = permutation_ends(fam, LM, a, a, x, 0, 1)
    fits = residual_ends(fam, LM, a, a, info, x, windows, 0, learn)[2]
    assert fits["residual_fit_identity"] == pytest.approx(1.0) and fits["residual_fit_orthogonal"] == pytest.approx(1.0)
    assert fits["residual_fit_wm"] == pytest.approx(1.0)
