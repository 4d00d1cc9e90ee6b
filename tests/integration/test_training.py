"""Seeds, the K-copy ensemble trainer, optimisers, resume and divergence."""
import pytest
import torch

from lmc_core.config import ConfigError, Seeds, TrainConfig, model_preset
from lmc_core.ensemble import copy_state, extract, stack, stack_states
from lmc_core.models import TransformerLM
from lmc_core.nn import DropoutSource
from lmc_core.nn.dropout import TrimmedDropout
from lmc_core.train.optim import StackedOptimizer, clip_per_copy, lr_at
from lmc_core.runs.checkpoints import train_resumable
from lmc_core.train import TrainingDiverged, train_copies

from conftest import tiny_model, tiny_spec


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def test_same_seeds_bit_identical_and_each_seed_matters(stream):
    base = train_copies(tiny_spec([Seeds(0, 1, 2)]), stream, "cpu", progress=False).state
    again = train_copies(tiny_spec([Seeds(0, 1, 2)]), stream, "cpu", progress=False).state
    assert same(base, again)
    for other in (Seeds(0, 5, 2), Seeds(0, 1, 5), Seeds(5, 1, 2)):
        st = train_copies(tiny_spec([other]), stream, "cpu", progress=False).state
        assert not same(base, st), f"changing seeds to {other} left the weights unchanged"


def test_copy_k_of_ensemble_matches_single_run(stream):
    seeds = [Seeds(0, 1, 2), Seeds(0, 3, 4), Seeds(7, 5, 6)]
    for opt in ({"optimizer": "sgd", "lr": 0.5, "momentum": 0.9},
                {"optimizer": "adamw", "lr": 3e-3, "schedule": "cosine", "warmup_steps": 3, "weight_decay": 0.1}):
        ens = train_copies(tiny_spec(seeds, **opt), stream, "cpu", progress=False)
        for k, s in enumerate(seeds):
            one = train_copies(tiny_spec([s], **opt), stream, "cpu", progress=False)
            for n, t in one.state.items():
                torch.testing.assert_close(ens.state[n][k : k + 1], t, rtol=1e-5, atol=1e-6)


def test_copies_sharing_init_start_identical_but_diverge(stream):
    seeds = [Seeds(0, 1, 1), Seeds(0, 2, 2)]
    r0 = train_copies(tiny_spec(seeds, steps=1), stream, "cpu", progress=False)
    m = TransformerLM(tiny_model(), 2).init_weights([0, 0])
    assert torch.equal(m.tok_emb[0], m.tok_emb[1])
    assert not torch.equal(r0.state["tok_emb"][0], r0.state["tok_emb"][1])


def test_dropout_masks_independent_of_k_in_both_modes():
    for mode in ("generator", "hash"):
        many = DropoutSource([3, 9, 4], [5, 5, 7], "cpu", mode).uniform(2, (6, 5))
        one = DropoutSource([9], [5], "cpu", mode).uniform(2, (6, 5))
        assert torch.equal(many[1], one[0])
        assert not torch.equal(many[0], many[1])
        u = DropoutSource([1], [0], "cpu", mode).uniform(0, (20000,))
        assert 0.49 < u.mean() < 0.51 and u.min() >= 0 and u.max() < 1
        for p in (0.1, 0.2, 1 / 3, 0.5, 0.25 + 2**-30, 0.75 + 2**-26):  # keep is exactly uniform >= p (mode
            # "hash": from the hash's integers)
            src = DropoutSource([3, 9], [5, 7], "cpu", mode)
            want = DropoutSource([3, 9], [5, 7], "cpu", mode).uniform(2, (6, 5)) >= p
            assert torch.equal(src.keep(2, (6, 5), p), want)
        for shape in ((6, 4), (2, 2, 3, 3), (7,)):  # (B*length, d), attention weights, any other
            trimmed = [TrimmedDropout(DropoutSource([3, 9], [5, 7], "cpu", mode), batch=2, length=3, full=5)
                       for _ in range(2)]  # fresh sources: a generator's draws advance it
            assert torch.equal(trimmed[0].keep(4, shape, 0.2), trimmed[1].uniform(4, shape) >= 0.2), shape


def test_the_keep_threshold_is_the_first_uniform_at_or_above_p():
    """rng.keep_at keeps b (the top 24 bits) iff b >= _threshold24(p), which must be exactly where b / 2**24 >= p
    starts, with p compared as float32 (as torch compares a float32 tensor with a Python float)."""
    from lmc_core.rng import _threshold24

    for p in (0.0, 1e-9, 0.1, 0.2, 1 / 3, 0.25, 0.25 + 2**-30, 0.5, 0.75 + 2**-26, 1 - 2**-26, 1.0):
        t = _threshold24(p)
        u = torch.tensor([max(t - 1, 0), t], dtype=torch.float32) / (1 << 24)  # exact: 24-bit integers
        assert bool(u[1] >= p), p
        assert t == 0 or not bool(u[0] >= p), p


def test_extract_and_stack_round_trip():
    m = TransformerLM(tiny_model(), 3).init_weights([1, 2, 3])
    parts = [extract(m, k) for k in range(3)]
    back = stack(parts)
    assert same(m.state_dict(), back.state_dict())
    x = torch.randint(0, 60, (1, 2, 12))
    with torch.no_grad():
        torch.testing.assert_close(m(x)[1:2], parts[1](x))
    assert same(stack_states([copy_state(m.state_dict(), k) for k in range(3)]), m.state_dict())


def test_stacked_adamw_and_clipping_match_torch():
    torch.manual_seed(0)
    w = torch.randn(1, 5, 3)
    grads = [torch.randn(1, 5, 3) * 10 for _ in range(4)]
    cfg = TrainConfig(optimizer="adamw", lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99), clip_norm=1.0)
    p1 = torch.nn.Parameter(w.clone())
    ours = StackedOptimizer(cfg, {"w": p1})
    p2 = torch.nn.Parameter(w.clone())
    ref = torch.optim.AdamW([p2], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99), eps=1e-8)
    for t, g in enumerate(grads):
        p1.grad, p2.grad = g.clone(), g.clone()
        clip_per_copy([p1.grad], 1.0)
        torch.nn.utils.clip_grad_norm_([p2], 1.0)
        ours.step(torch.tensor([1e-2]), torch.tensor([t]))
        ref.step()
    torch.testing.assert_close(p1.data, p2.data, rtol=1e-5, atol=1e-7)


def test_clipping_is_per_copy():
    g = torch.stack([torch.full((4,), 10.0), torch.full((4,), 0.01)])
    norms = clip_per_copy([g], 1.0)
    assert norms[0] == pytest.approx(20.0) and g[0].norm() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(g[1], torch.full((4,), 0.01))  # small copy untouched


def test_schedules():
    steps = torch.tensor([0, 9, 10, 25])
    step = lr_at(TrainConfig(lr=2.0, schedule="step", gamma=0.5, step_size=10), steps, 100)
    assert step.tolist() == pytest.approx([2.0, 2.0, 1.0, 0.5])
    cos = lr_at(TrainConfig(steps=30, optimizer="adamw", lr=1.0, schedule="cosine", warmup_steps=10, min_lr=0.1),
                torch.tensor([0, 9, 10, 20, 30, 40]), 100)
    assert cos.tolist() == pytest.approx([0.1, 1.0, 1.0, 0.55, 0.1, 0.1], abs=1e-6)


def test_gradient_accumulation_uses_distinct_micro_batches(stream):
    m = tiny_model(dropout=0.0)
    full = train_copies(tiny_spec(model=m, steps=5, batch_size=8), stream, "cpu", progress=False).state
    acc = train_copies(tiny_spec(model=m, steps=5, batch_size=8, accum=4), stream, "cpu", progress=False).state
    for n in full:
        torch.testing.assert_close(full[n], acc[n], rtol=1e-4, atol=1e-5)


def test_resume_is_bit_exact(stream, tmp_path):
    spec = tiny_spec([Seeds(0, 1, 2), Seeds(0, 3, 4)], steps=12, save_every=4, momentum=0.9)
    whole = train_copies(spec, stream, "cpu", progress=False).state
    part = train_resumable(spec, stream, "cpu", tmp_path, progress=False, stop_after=6)
    assert part.steps == [6, 6]
    resumed = train_resumable(spec, stream, "cpu", tmp_path, progress=False)  # from step 4
    assert resumed.steps == [12, 12]
    assert same(whole, resumed.state)


def test_divergence_stops_with_advice(stream, tmp_path):
    spec = tiny_spec(steps=30, lr=1e12, clip_norm=None, save_every=1)
    with pytest.raises(TrainingDiverged, match="(?i)lower lr"):
        train_resumable(spec, stream, "cpu", tmp_path, progress=False, log_every=1)
    assert list(tmp_path.glob("resume-*.safetensors")), "checkpoints before the divergence must be kept"


@pytest.mark.parametrize("bad, match", [
    (dict(steps=0), "steps"), (dict(steps=-3), "steps"), (dict(optimizer="lion"), "optimizer"),
    (dict(batch_size=6, accum=4), "divisible"), (dict(checkpoints=(5000,)), "checkpoint"),
])
def test_bad_train_config(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad).validate()


def test_unknown_model_names_the_choices():
    with pytest.raises(ConfigError, match="ptb-transformer"):
        model_preset("resnet50")


def test_gpt_presets_build_and_tie_weights():
    for name in ("tinygpt", "toygpt"):
        cfg = model_preset(name, vocab_size=100)
        m = TransformerLM(cfg, 2).init_weights([0, 1])
        assert m.head is None and "pos_emb" in dict(m.named_parameters())
        out = m(torch.randint(0, 100, (2, 3, cfg.context)))
        assert out.shape == (2, 3 * cfg.context, 100)


def test_tensorboard_logging(stream, tmp_path):
    train_resumable(tiny_spec(steps=3), stream, "cpu", progress=False, log_every=1, tensorboard_dir=tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_chunked_loss_equals_whole_loss_and_gradients():
    for name in ("ptb-transformer", "tinygpt"):
        cfg = model_preset(name, vocab_size=50, **({"d_model": 16, "d_ff": 16} if name == "ptb-transformer" else {}))
        m = TransformerLM(cfg, 3).init_weights([1, 2, 3])
        x = torch.randint(0, 50, (3, 4, cfg.context + 1))
        grads = []
        for budget in (None, 0.001):  # 0.001 MB: one copy and a few tokens per piece
            m.zero_grad()
            h = m.features(x[..., :-1])
            loss = m.copy_losses(h, x[..., 1:].reshape(3, -1), budget)
            loss.sum().backward()
            grads.append((loss.detach(), [p.grad.clone() for p in m.parameters()]))
        torch.testing.assert_close(grads[0][0], grads[1][0])
        for a, b in zip(grads[0][1], grads[1][1]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bit_identical_with_several_threads_at_quick_profile_size():
    """Regression: the backward of advanced-indexing embeddings accumulated in a thread-dependent order."""
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, 72, (60000,), generator=g)
    cfg = model_preset("ptb-transformer", vocab_size=72, d_model=64, d_ff=64)
    spec = tiny_spec([Seeds(0, 100, 100)], steps=30, model=cfg, batch_size=16)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = train_copies(spec, s, "cpu", progress=False).state
        b = train_copies(spec, s, "cpu", progress=False).state
    finally:
        torch.set_num_threads(threads)
    assert same(a, b)
