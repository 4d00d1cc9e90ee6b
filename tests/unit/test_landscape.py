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


# --------------------------------------------------------------------------- review fixes: ece vectorised, plane chunked
def _ece_per_bin_loop(confidence, correct, bins):
    """ece as it was defined before it was vectorised: one pass over every bin (the reference)."""
    conf, corr = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() / len(conf) * abs(corr[m].mean() - conf[m].mean())
    return float(total)


def test_vectorised_ece_equals_the_per_bin_definition_bit_for_bit():
    rng = np.random.default_rng(0)
    for t in range(300):
        n = int(rng.integers(1, 1500))
        bins = int(rng.choice([1, 2, 3, 7, 10, 15, 100, 1000, 4000]))
        conf = rng.random(n)
        conf[rng.random(n) < 0.05] = 0.0  # the edges: 0 in the first bin, 1 in the last
        conf[rng.random(n) < 0.05] = 1.0
        if t % 3 == 0:
            conf = np.round(conf, 2)  # many ties on bin edges (0.1 * 10 = 1.0000000000000002, ...)
        corr = (rng.random(n) < conf).astype(bool if t % 2 else float)
        assert ece(conf, corr, bins) == _ece_per_bin_loop(conf, corr, bins), (t, n, bins)
    assert ece([0.0, 1.0], [1, 1], bins=1) == _ece_per_bin_loop([0.0, 1.0], [1, 1], 1) == 0.5


def test_ece_with_many_bins_is_fast_and_bins_are_bounded():
    import time

    from lmc_core.analysis.landscape import MAX_ECE_BINS

    rng = np.random.default_rng(1)
    conf = rng.random(20_000)
    corr = (rng.random(20_000) < conf).astype(float)
    t = time.perf_counter()
    for bins in (10**4, 10**5, MAX_ECE_BINS):
        ece(conf, corr, bins)
    assert time.perf_counter() - t < 5  # a loop over the bins took 0.47 s for 10**5 bins of 1,000 examples
    assert ece(conf, corr, 10**4) == _ece_per_bin_loop(conf, corr, 10**4)
    spread = np.arange(1000) / 1000 + 1 / 2000  # one example in each of 1000 bins
    assert ece(spread, np.ones(1000), 1000) == pytest.approx(np.mean(1 - spread))
    for bad in (0, MAX_ECE_BINS + 1, 10**10, 2.0):
        with pytest.raises(ConfigError, match="bins"):
            ece(conf, corr, bins=bad)


def _plane_all_at_once(cfg, a, b, c, examples, lo, hi, points):
    """plane as it was before it evaluated in chunks: every grid model built first (the reference)."""
    from lmc_core.analysis.landscape import _evaluate
    from lmc_core.ensemble import stack_states

    names = sorted(a)
    flat = lambda s: torch.cat([s[n].double().reshape(-1) for n in names])  # noqa: E731
    va, vb, vc = flat(a), flat(b), flat(c)
    u, v = vb - va, vc - va
    unit = float(u.norm())
    e1 = u / unit
    v_perp = v - (v @ e1) * e1
    e2 = v_perp / float(v_perp.norm())
    xs = np.linspace(lo, hi, points)
    states = []
    for x, y in [(x, y) for y in xs for x in xs]:
        vec = va + unit * (x * e1 + y * e2)
        st, off = {}, 0
        for n in names:
            st[n] = vec[off : off + a[n].numel()].view(a[n].shape).to(a[n].dtype)
            off += a[n].numel()
        states.append(st)
    loss, acc, cal = [], [], []
    for c0 in range(0, len(states), 32):
        r = _evaluate(cfg, stack_states(states[c0 : c0 + 32]), examples, "cpu", keep=("examples", "confidence"))
        loss += list(r.loss)
        acc += list(r.accuracy)
        cal += [ece(r.confidence[q], r.per_example_correct[q]) for q in range(len(r.loss))]
    return {k: np.reshape(v, (points, points)) for k, v in (("loss", loss), ("accuracy", acc), ("ece", cal))}


def test_plane_builds_a_chunk_of_models_at_a_time_with_the_same_numbers(trained, monkeypatch):
    import gc
    import weakref

    from lmc_core.analysis import landscape as L

    cfg, state, data = trained
    a, b, c = (copy_state(state, i) for i in range(3))
    ex = family_of(cfg).eval_examples(cfg, data)
    points = 9  # 81 models: three chunks of at most 32
    built, alive_at_eval = [], []
    real_stack, real_eval = L.stack_states, L._evaluate

    def stack(states):
        built.extend(weakref.ref(t) for s in states for t in s.values())
        return real_stack(states)

    def evaluate(*args, **kw):
        gc.collect()
        alive_at_eval.append(sum(r() is not None for r in built))
        return real_eval(*args, **kw)

    monkeypatch.setattr(L, "stack_states", stack)
    monkeypatch.setattr(L, "_evaluate", evaluate)
    pl = plane(cfg, a, b, c, ex, lo=-0.5, hi=1.5, points=points)
    monkeypatch.undo()
    want = _plane_all_at_once(cfg, a, b, c, ex, -0.5, 1.5, points)
    for key in ("loss", "accuracy", "ece"):
        assert np.array_equal(pl[key], want[key]), key  # bit for bit
    assert len(alive_at_eval) == 3
    assert max(alive_at_eval) <= 32 * len(a)  # never more than one chunk (32) of models in memory, not 81
    with pytest.raises(ConfigError, match="lo=1.0 must be below hi=0.0"):
        plane(cfg, a, b, c, ex, lo=1.0, hi=0.0)
