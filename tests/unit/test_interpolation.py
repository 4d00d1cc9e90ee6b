"""Interpolation invariants, barrier definitions on hand-computed curves, the run store."""
import numpy as np
import pytest
import torch

from lmc_core.analysis import barrier as B
from lmc_core.config import Seeds
from lmc_core.ensemble import copy_state, model_from_state
from lmc_core.analysis.interpolate import alpha_grid, evaluate_state, interpolate_states, interpolation_curve
from lmc_core.files import CorruptFileError, load_tensors
from lmc_core.models import TransformerLM
from lmc_core.runs.store import RunStore
from lmc_core.config import model_preset

from conftest import tiny_model, tiny_spec


def two_models(cfg=None):
    m = TransformerLM(cfg or tiny_model(), 2).init_weights([1, 2])
    st = m.state_dict()
    return copy_state(st, 0), copy_state(st, 1)


def test_endpoints_reproduce_models():
    a, b = two_models()
    path = interpolate_states(a, b, alpha_grid(5))
    x = torch.randint(0, 60, (1, 3, 12))
    with torch.no_grad():
        out = model_from_state(tiny_model(), path).eval()(x)
        assert torch.equal(out[0], model_from_state(tiny_model(), a).eval()(x)[0])
        assert torch.equal(out[-1], model_from_state(tiny_model(), b).eval()(x)[0])
    for n in a:
        assert torch.equal(path[n][2:3], 0.5 * a[n] + 0.5 * b[n])


def test_tied_embedding_interpolated_once():
    cfg = model_preset("tinygpt", vocab_size=30)
    a, b = two_models(cfg)
    assert "head.weight" not in a  # the output layer reads tok_emb
    path = interpolate_states(a, b, [0.0, 0.25, 1.0])
    m = model_from_state(cfg, path).eval()
    x = torch.randint(0, 30, (1, 2, cfg.context))
    with torch.no_grad():
        mid = model_from_state(cfg, {n: 0.75 * a[n] + 0.25 * b[n] for n in a}).eval()(x)
        torch.testing.assert_close(m(x)[1:2], mid)


def test_subset_interpolation_holds_the_rest_fixed():
    a, b = two_models()
    path = interpolate_states(a, b, [0.0, 0.5, 1.0], keys={"tok_emb"})
    assert torch.equal(path["layers.0.ff1.weight"][2], a["layers.0.ff1.weight"][0])
    assert not torch.equal(path["tok_emb"][2], a["tok_emb"][0])


def test_batched_alpha_evaluation_matches_one_at_a_time(stream):
    a, b = two_models()
    alphas = alpha_grid(4)
    path = interpolate_states(a, b, alphas)
    together = evaluate_state(tiny_model(), path, stream, max_tokens=600, batch_size=8)
    tiny = evaluate_state(tiny_model(), path, stream, max_tokens=600, batch_size=8, memory_mb=0)  # 1 copy/group
    for i in range(4):
        alone = evaluate_state(tiny_model(), {n: t[i : i + 1] for n, t in path.items()}, stream, 600, 8)
        assert together.loss[i] == pytest.approx(alone.loss[0], rel=1e-5)
        assert together.accuracy[i] == pytest.approx(alone.accuracy[0])
    np.testing.assert_allclose(together.loss, tiny.loss, rtol=1e-5)


def test_barrier_of_model_with_itself_is_zero(stream):
    a, _ = two_models()
    curve = interpolation_curve(tiny_model(), a, a, {"test": stream}, alpha_grid(5), max_tokens=300)
    for metric in ("loss", "ppl", "error"):
        for d in B.DEFINITIONS:
            assert B.barrier(curve.alpha, curve[metric], d) == pytest.approx(0.0, abs=1e-5)


def test_barrier_definitions_by_hand():
    a = [0.0, 0.25, 0.5, 0.75, 1.0]
    v = [1.0, 4.0, 2.0, 2.5, 3.0]
    assert B.barrier(a, v, "mean") == pytest.approx(4.0 - 2.0)
    # chord from (0,1) to (1,3): 1.5, 2, 2.5 at the inner points -> heights 2.5, 0, 0
    assert B.barrier(a, v, "chord") == pytest.approx(2.5)
    assert B.barrier(a, v, "midpoint") == pytest.approx(0.0)
    # subchord: point 0.25 over the chord 0 -> 0.5 (1 -> 2) is 4 - 1.5 = 2.5, the largest of all chords
    assert B.barrier(a, v, "subchord") == pytest.approx(2.5)
    w = [0.0, 0.5, 1.0]
    dip = [1.0, 0.0, 3.0]
    assert B.barrier(w, dip, "mean") == pytest.approx(3.0 - 2.0)  # max is an endpoint
    assert B.barrier(w, dip, "chord") == pytest.approx(0.0)
    assert B.barrier(w, dip, "midpoint") == pytest.approx(-2.0)
    # a bump between two inner points that the endpoint chord misses
    x = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    y = [10.0, 0.0, 1.0, 0.0, 0.0, 10.0]
    assert B.barrier(x, y, "chord") == pytest.approx(0.0)  # the whole curve lies under the endpoint chord
    assert B.barrier(x, y, "subchord") == pytest.approx(1.0)
    assert B.instability(a, v) == pytest.approx(100.0)
    assert B.instability([0.0, 0.4, 1.0], [2.0, 2.03, 2.0]) == pytest.approx(1.5)
    assert B.is_stable(1.5) and not B.is_stable(2.0)
    with pytest.raises(ValueError, match="choose one of"):
        B.barrier(a, v, "area")
    with pytest.raises(ValueError, match="endpoints"):
        B.barrier([0.1, 1.0], [1, 2])


def test_run_store_returns_cached_run_without_training(stream, tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    spec = tiny_spec([Seeds(0, 1, 1), Seeds(0, 2, 2)], steps=6)
    first = store.get(spec, stream, "cpu", progress=False)
    assert first.trained_now

    def boom(*a, **k):
        raise AssertionError("trained again although the run is stored")

    monkeypatch.setattr("lmc_core.runs.store.train_resumable", boom)
    again = store.get(spec, stream, "cpu", progress=False)
    assert not again.trained_now
    assert all(torch.equal(first.state[n], again.state[n]) for n in first.state)
    assert store.path(spec) != store.path(tiny_spec([Seeds(0, 1, 1), Seeds(0, 2, 2)], steps=7))


def test_truncated_files_are_detected_and_retrained(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = tiny_spec(steps=6, save_every=3)
    first = store.get(spec, stream, "cpu", progress=False)
    final = store.path(spec) / "final.safetensors"
    data = final.read_bytes()
    final.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError):
        load_tensors(final)
    again = store.get(spec, stream, "cpu", progress=False)
    assert again.trained_now  # the truncated file was not used
    assert all(torch.equal(first.state[n], again.state[n]) for n in first.state)
    assert (store.path(spec) / "final.safetensors.corrupt").exists()  # moved aside, not deleted


def test_truncated_checkpoint_is_never_resumed_from(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = tiny_spec(steps=8, save_every=2)
    store.get(spec, stream, "cpu", progress=False, stop_after=6)  # "killed" after step 6
    ckpt = store.path(spec) / "ckpt" / "resume-0000006.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    done = store.get(spec, stream, "cpu", progress=False)  # resumes from step 4, not the broken 6
    whole = RunStore(tmp_path / "b").get(spec, stream, "cpu", progress=False)
    assert all(torch.equal(done.state[n], whole.state[n]) for n in done.state)
    assert (ckpt.parent / "resume-0000006.safetensors.corrupt").exists()
