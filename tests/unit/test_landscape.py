"""Clustering, barrier matrices, planes, calibration and sharpness on controlled inputs."""
import numpy as np
import pytest
import torch

from lmc_core.analysis import barrier as B
from lmc_core.analysis.cluster import adjusted_rand, eigengap, laplacian_spectrum, match_labels, spectral_clusters, stability
from lmc_core.config import ConfigError, RunSpec, Seeds, TrainConfig
from lmc_core.data.batches import Examples
from lmc_core.data.vectors import VectorDataConfig
from lmc_core.ensemble import copy_state
from lmc_core.families import family_of
from lmc_core.analysis.interpolate import alpha_grid, interpolation_curve
from lmc_core.analysis.landscape import barrier_matrix, ece, plane, sharpness
from lmc_core.models.mlp import MLPConfig
from lmc_core.train import train_copies


def blocks(sizes=(8, 4), within=0.05, between=1.0, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.repeat(np.arange(len(sizes)), sizes)
    d = np.where(lab[:, None] == lab[None], within, between) * (1 + 0.1 * rng.random((len(lab),) * 2))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0)
    return d, lab


def test_spectral_clustering_recovers_blocks_and_the_eigengap_picks_k():
    d, lab = blocks((8, 4, 3))
    c = spectral_clusters(d, delta=0.3)
    assert c.k == 3 and adjusted_rand(c.labels, lab) == pytest.approx(1.0)
    assert np.bincount(c.labels).tolist() == [8, 4, 3]  # 0 is the largest cluster
    assert stability(d, c, resamples=5).min() == pytest.approx(1.0)
    uniform = np.ones((6, 6)) - np.eye(6)
    assert spectral_clusters(uniform).k == 1


def test_adjusted_rand_and_label_matching():
    assert adjusted_rand([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert adjusted_rand([0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 0, 1]) < 0.1
    assert match_labels(np.array([0, 0, 1, 1, 1]), np.array([1, 1, 0, 0, 0])).tolist() == [0, 0, 1, 1, 1]
    ev, _ = laplacian_spectrum(np.ones((4, 4)))
    assert ev[0] == pytest.approx(0, abs=1e-9) and eigengap(np.array([0, 0, 0.9, 1.0]), 3) == 2


def test_ece_on_known_cases():
    assert ece(np.full(100, 0.8), np.r_[np.ones(80), np.zeros(20)]) == pytest.approx(0.0)
    assert ece(np.full(10, 0.95), np.zeros(10)) == pytest.approx(0.95)
    conf = np.r_[np.full(50, 0.55), np.full(50, 0.95)]
    corr = np.r_[np.ones(25), np.zeros(25), np.ones(50)]
    assert ece(conf, corr) == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)


@pytest.fixture(scope="module")
def trained():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (400,), generator=g)
    x = torch.randn(3, 8, generator=g)[y] * 2 + torch.randn(400, 8, generator=g)
    data = Examples(x=x, y=y)
    spec = RunSpec(model=MLPConfig(d_in=8, hidden=(16,), n_classes=3), data=VectorDataConfig(),
                   train=TrainConfig(steps=30, batch_size=40, optimizer="sgd", lr=0.2, schedule="constant",
                                     clip_norm=None), seeds=tuple(Seeds(i, i, i) for i in range(4)))
    return spec.model, train_copies(spec, data, "cpu", progress=False).state, data


def test_barrier_matrix_is_the_per_pair_barrier_and_is_cached(trained, tmp_path):
    cfg, state, data = trained
    alphas = alpha_grid(6)
    ex = family_of(cfg).eval_examples(cfg, data)
    cache = tmp_path / "m.safetensors"
    m = barrier_matrix(cfg, state, ex, alphas, "subchord", pairs_per_batch=2, cache=cache)
    assert np.allclose(m, m.T) and np.all(np.diag(m) == 0) and cache.exists()
    c = interpolation_curve(cfg, copy_state(state, 1), copy_state(state, 3), {"test": data}, alphas)
    assert m[1, 3] == pytest.approx(B.barrier(alphas, c.loss, "subchord"), rel=1e-5, abs=1e-7)
    assert np.array_equal(barrier_matrix(cfg, {n: t * 0 for n, t in state.items()}, ex, alphas, cache=cache), m)


def test_a_damaged_cached_matrix_is_moved_aside_and_recomputed(trained, tmp_path):
    cfg, state, data = trained
    alphas = alpha_grid(4)
    ex = family_of(cfg).eval_examples(cfg, data)
    cache = tmp_path / "m.safetensors"
    m = barrier_matrix(cfg, state, ex, alphas, cache=cache)
    cache.write_bytes(cache.read_bytes()[:-7])  # truncated
    again = barrier_matrix(cfg, state, ex, alphas, cache=cache)
    assert np.array_equal(again, m) and cache.exists()
    assert (tmp_path / "m.safetensors.corrupt").exists(), "the damaged file was overwritten, not kept aside"


def test_plane_reproduces_the_three_models_at_their_coordinates(trained):
    cfg, state, data = trained
    a, b, c = (copy_state(state, i) for i in range(3))
    fam = family_of(cfg)
    ex = fam.eval_examples(cfg, data)
    pl = plane(cfg, a, b, c, ex, lo=0.0, hi=1.0, points=2)
    ends = fam.evaluate(cfg, state, ex)
    assert pl["loss"][0, 0] == pytest.approx(ends.loss[0], rel=1e-5)  # (0, 0) is A
    assert pl["loss"][0, 1] == pytest.approx(ends.loss[1], rel=1e-5)  # (1, 0) is B
    assert pl["models"]["B"] == (1.0, 0.0) and pl["ece"].shape == (2, 2)


def test_sharpness_is_zero_without_room_and_positive_with_it(trained):
    cfg, state, data = trained
    batches = [{"x": data["x"][i * 40 : (i + 1) * 40][None], "y": data["y"][i * 40 : (i + 1) * 40][None]}
               for i in range(3)]
    assert np.allclose(sharpness(cfg, state, batches, eps=1e-12), 0, atol=1e-6)  # no room to climb
    for eps in (0.0, -0.01, float("nan")):
        with pytest.raises(ConfigError, match="eps"):
            sharpness(cfg, state, batches, eps=eps)
    s = sharpness(cfg, state, batches, eps=1e-2, lr=1.0)
    assert (s > 0).all() and s.shape == (4,)
