"""Your own models: linear paths, barriers and permutation alignment for any nn.Module and for Hugging Face
checkpoints (GPT-2, the shipped MiniLM), as a new user would call them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lmc_core
from lmc_core import (NonFiniteWeightsError, SpecError, UnsupportedModelError, align_models, auto_spec, judge_paths,
                      linear_path, load_hf, path_outputs)
from lmc_core.align import Axis, PermutationSpec, UnitGroup, apply_permutation, random_permutation, weight_matching
from lmc_core.analysis import barrier as B

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")  # a dev dependency: installed by `make install`


def mlp(seed: int) -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))


class ResCNN(nn.Module):
    """Conv-BN-ReLU, a residual block of the same kind, flatten, linear head."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        h = h + torch.relu(self.b2(self.c2(h)))
        return self.fc(h.flatten(1))


def cnn(seed: int) -> ResCNN:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = ResCNN()
        m.train()
        with torch.no_grad():
            m(torch.randn(32, 3, 4, 4) * 1.5 + 0.3)  # running statistics that are not the initial ones
    return m.eval()


def data(n=96, d=12, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def images(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 5, (n,), generator=g)


def planted(model: nn.Module, sample, seed=3):
    """A copy of `model` with its hidden units randomly permuted by its automatic spec (same function)."""
    ms = auto_spec(model, sample)
    perms = random_permutation(ms.spec, torch.Generator().manual_seed(seed))
    other = type(model)() if not isinstance(model, nn.Sequential) else mlp(99)
    other.load_state_dict(ms.unstacked(apply_permutation(ms.stacked(model.state_dict()), ms.spec, perms),
                                       model.state_dict()))
    return other.eval()


# ---------------------------------------------------------------- linear paths


@pytest.mark.parametrize("batched", [True, False])
def test_endpoints_of_a_path_reproduce_the_models_exactly(batched):
    x, _ = data()
    a, b = mlp(0), mlp(1)
    out = path_outputs(a, b, x, [0.0, 0.3, 1.0], batched=batched)
    with torch.no_grad():
        assert torch.equal(out[0], a(x)) and torch.equal(out[-1], b(x))
    ca, cb = cnn(0), cnn(1)
    xi, _ = images()
    out = path_outputs(ca, cb, xi, 3, batched=batched)  # BatchNorm statistics interpolated: exact endpoints
    # one alpha at a time runs the model itself: bit for bit. vmapped, a convolution runs as one grouped convolution
    # whose summation order may differ from the model's on some CPUs (1 ulp on an AMD EPYC): rounding, no more
    tol = 0 if not batched else 4 * torch.finfo(torch.float32).eps
    with torch.no_grad():
        for got, model in ((out[0], ca), (out[-1], cb)):
            want = model(xi)
            assert float((got - want).abs().max()) <= tol * float(want.abs().max())


def test_batched_path_equals_one_alpha_at_a_time_and_the_models_own_loss():
    x, y = data()
    a, b = mlp(0), mlp(1)
    one = linear_path(a, b, (x, y), alphas=7)
    two = linear_path(a, b, (x, y), alphas=7, batched=False)
    assert one.mode == "batched" and two.mode == "one alpha at a time"
    np.testing.assert_allclose(one.curve.loss, two.curve.loss, rtol=1e-6)
    with torch.no_grad():
        own = nn.functional.cross_entropy(b(x), y, reduction="none").double().mean()
        err = (b(x).argmax(-1) != y).double().mean()
    assert one.curve.loss.iloc[-1] == pytest.approx(float(own), rel=1e-6)
    assert one.curve.error.iloc[-1] == pytest.approx(float(err))


def test_a_model_interpolated_with_itself_is_flat():
    x, y = data()
    a = mlp(0)
    r = linear_path(a, a, {"train": (x, y), "test": data(seed=1)})
    assert (r.barriers.barrier.abs() < 1e-6).all() and r.barriers.convex.all()
    assert all(v.verdict == "no barrier" for v in r.verdicts.values())
    ca = cnn(0)
    xi, yi = images()
    r = linear_path(ca, ca, (xi, yi), train_data=(xi, yi), batch_size=16)
    assert (r.barriers.barrier.abs() < 1e-6).all()


def test_barriers_and_verdict_are_the_notebooks():
    x, y = data()
    r = linear_path(mlp(0), mlp(1), (x, y), alphas=9)
    c = r.curve
    assert r.barrier(metric="loss", definition="chord") == pytest.approx(B.barrier(c.alpha, c.loss, "chord"))
    assert r.barrier(metric="error", definition="mean") == pytest.approx(B.barrier(c.alpha, c.error, "mean"))
    row = r.barriers.query("metric == 'loss' and definition == 'mean'").iloc[0]
    assert row.instability == pytest.approx(B.instability(c.alpha, c.loss, "mean"))
    assert row.unit == "% of endpoints' mean"
    v = r.verdicts[("eval", "error")]
    assert v.verdict in ("too few units", "no barrier") and "percentage points" in v.text()
    many = judge_paths([linear_path(mlp(2 * i), mlp(2 * i + 1), (x, y)) for i in range(3)], metric="error")
    assert many.n_pairs == 3 and many.verdict in ("too few units", "no barrier")  # 3 pairs: the range, no verdict


def test_batchnorm_statistics_are_recomputed_never_copied_from_a():
    xi, yi = images()
    ca, cb = cnn(0), cnn(1)
    with pytest.raises(ValueError, match="train_data"):
        linear_path(ca, cb, (xi, yi))
    r = linear_path(ca, cb, (xi, yi), train_data=(xi, yi), batch_size=16, alphas=3)
    assert any("recomputed" in n for n in r.notes)
    ref = cnn(0)  # A with statistics recomputed by hand on the same batches: each layer's input pooled over all
    seen = {}  # examples (mean and unbiased variance), the batches run in train mode
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
            m.register_forward_pre_hook(lambda mod, inp: seen.setdefault(mod, []).append(inp[0].double()))
    with torch.no_grad():
        for i in range(0, len(xi), 16):
            ref(xi[i : i + 16])
        for m, xs in seen.items():
            x = torch.cat(xs)
            m.running_var, m.running_mean = (t.float() for t in torch.var_mean(x, (0, 2, 3), correction=1))
        ref.eval()
        want = nn.functional.cross_entropy(ref(xi), yi, reduction="none").double().mean()
    assert r.curve.loss.iloc[0] == pytest.approx(float(want), rel=1e-5)
    assert ca.training is False and cb.b1.running_mean is not None  # the models are untouched


def test_bad_input_is_a_clear_error():
    x, y = data()
    with pytest.raises(TypeError, match="batch must be"):
        linear_path(mlp(0), mlp(1), [1, 2, 3])
    with pytest.raises(ValueError, match="same architecture|differ"):
        linear_path(mlp(0), cnn(0), (x, y))
    a, b = mlp(0), mlp(1)
    a.register_buffer("ids", torch.arange(5))
    b.register_buffer("ids", torch.arange(5) + 1)
    with pytest.raises(ValueError, match="ids"):
        linear_path(a, b, (x, y))
    with pytest.raises(ValueError, match="linear_path"):
        lmc_core.interpolate_states(mlp(0).state_dict(), mlp(1).state_dict(), [0, 1])
    with pytest.raises(TypeError, match="linear_path"):
        lmc_core.interpolation_curve(mlp(0), {}, {}, {}, [0, 1])


def test_unaligned_curve_equals_loss_landscapes_linear_interpolation():
    """The reference implementation researchers use today (loss-landscapes, installed by the dev extra)."""
    import loss_landscapes
    import loss_landscapes.metrics as metrics

    x, y = data()
    a, b = mlp(0), mlp(1)
    steps = 10
    theirs = loss_landscapes.linear_interpolation(a, b, metrics.Loss(nn.CrossEntropyLoss(), x, y), steps,
                                                  deepcopy_model=True)
    ours = linear_path(a, b, (x, y), alphas=np.arange(steps + 1) / steps, batch_size=len(x))
    # loss-landscapes evaluates alpha = 1/steps, ..., 1 (it steps from A before the first evaluation)
    np.testing.assert_allclose(ours.curve.loss.to_numpy()[1:], theirs, rtol=2e-6, atol=2e-6)


# ---------------------------------------------------------------- alignment


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_a_planted_permutation_is_recovered_exactly(method):
    x, _ = data()
    a = mlp(0)
    b = planted(a, x)
    al = align_models(a, b, x, method=method)
    for n, t in a.state_dict().items():
        assert torch.equal(al.model.state_dict()[n], t), n
    assert al.check.ok and al.max_diff_b < 1e-5
    xi, _ = images()
    ca = cnn(0)
    cb = planted(ca, xi)
    al = align_models(ca, cb, xi, method=method)
    for n, t in ca.state_dict().items():
        assert torch.equal(al.model.state_dict()[n], t), n


def test_auto_spec_of_a_resnet_block_permutes_batchnorm_and_the_residual_stream_together():
    xi, _ = images()
    ms = auto_spec(cnn(0), xi)
    (g,) = ms.spec.groups  # conv1's units are the residual stream that conv2 reads and writes
    params = {ax.param for ax in g.axes}
    assert {"b1.running_mean", "b2.running_var", "c2.weight", "fc.weight"} <= params
    assert ms.views == {"fc.weight": (5, 8, 16)}  # the head reads the flattened channels in blocks of 4x4


def test_the_spec_check_catches_a_wrong_spec_naming_its_parameters():
    x, _ = data()
    wrong = PermutationSpec((UnitGroup("hidden", 32, (Axis("0.weight", 1), Axis("0.bias", 1))),))  # forgot 2.weight
    with pytest.raises(SpecError, match=r"'hidden'.*0\.bias.*0\.weight"):
        align_models(mlp(0), mlp(1), x, spec=wrong)
    right = PermutationSpec((UnitGroup("hidden", 32, (Axis("0.weight", 1), Axis("0.bias", 1), Axis("2.weight", 2))),))
    assert align_models(mlp(0), mlp(1), x, spec=right).check.ok
    xi, _ = images()
    auto = auto_spec(cnn(0), xi)
    (g,) = auto.spec.groups
    no_stats = PermutationSpec((UnitGroup(g.name, g.size, tuple(ax for ax in g.axes if "running" not in ax.param)),))
    with pytest.raises(SpecError, match="b1.weight"):  # BatchNorm statistics left out: the outputs move
        align_models(cnn(0), cnn(1), xi, spec=type(auto)(no_stats, auto.views))


def test_unsupported_models_name_the_module():
    class Attn(nn.Module):
        def __init__(self, **kw):
            super().__init__()
            self.inp = nn.Linear(8, 8)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True, **kw)

        def forward(self, x):
            return self.mha(self.inp(x), x, x)[0]

    with pytest.raises(UnsupportedModelError, match="'mha'.*add_bias_kv.*by hand"):
        auto_spec(Attn(add_bias_kv=True), torch.randn(2, 3, 8))
    # key and value are the model's input, read through the same in_proj columns as the query: inp's units stay
    ms = auto_spec(Attn(), torch.randn(2, 3, 8))
    assert "mha.heads" in ms.spec.names and not any(n.startswith("inp") for n in ms.spec.names)
    assert any("'inp'" in n and "stay in place" in n for n in ms.spec.notes)


def test_non_finite_weights_are_refused_before_any_matching():
    x, _ = data()
    a, b = mlp(0), mlp(1)
    with torch.no_grad():
        b[2].weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"model_b.*'2\.weight'"):
        align_models(a, b, x)
    ms = auto_spec(a, x)
    with pytest.raises(NonFiniteWeightsError, match=r"model B.*'2\.weight'"):
        weight_matching(ms.spec, ms.stacked(a.state_dict()), ms.stacked(b.state_dict()))
    from lmc_core.align import activation_matching

    feats = {g.name: [torch.randn(10, g.size)] for g in ms.spec.groups}
    bad = {k: [v[0] * float("nan")] for k, v in feats.items()}
    with pytest.raises(NonFiniteWeightsError, match="model B"):
        activation_matching(ms.spec, feats, bad)


# ---------------------------------------------------------------- Hugging Face checkpoints


def gpt2(seed: int, **kw):
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=12, n_embd=16, n_layer=2, n_head=2, **kw)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.mark.parametrize("act", ["gelu_new", "relu", "silu", "gelu", "quick_gelu"])
def test_gpt2_checkpoints_convert_with_their_activation_and_match_transformers(act, tmp_path):
    hf = gpt2(0, activation_function=act)
    hf.save_pretrained(tmp_path)
    ours = load_hf(tmp_path)  # a local folder, offline; the logits-parity check runs inside
    tok = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(tok[None])[0].view(3, 12, 40), hf(tok).logits, rtol=1e-4, atol=1e-5)


def test_every_gpt2_activation_is_honoured_or_refused_by_name():
    from transformers.activations import ACT2CLS

    for act in ACT2CLS:
        try:
            load_hf(gpt2(0, activation_function=act))  # raises unless the logits agree
        except lmc_core.ConversionError as e:
            assert act in str(e) and act in ("prelu", "xielu"), act


def test_a_conversion_that_changes_the_logits_is_refused(monkeypatch):
    from lmc_core.nn import activations

    monkeypatch.setitem(activations.HF_ACTIVATIONS, "relu", "gelu")  # the old silent mistake
    with pytest.raises(lmc_core.ConversionError, match="differs from transformers"):
        load_hf(gpt2(0, activation_function="relu"))
    with pytest.raises(lmc_core.ConversionError, match="layer_norm_epsilon"):
        load_hf(gpt2(0, layer_norm_epsilon=1e-6))


@pytest.mark.parametrize("act", ["gelu_new", "relu"])
def test_gpt2_paths_and_alignment(act):
    a, b = load_hf(gpt2(0, activation_function=act)), load_hf(gpt2(1, activation_function=act))
    stream = torch.randint(0, 40, (400,), generator=torch.Generator().manual_seed(2))
    r = linear_path(a, a, stream)
    assert r.mode == "family ensemble" and (r.barriers.barrier.abs() < 1e-6).all()
    r = linear_path(a, b, {"test": stream}, alphas=5)
    fam = lmc_core.family_of(a.cfg)
    own = fam.evaluate(a.cfg, a.state_dict(), fam.eval_examples(a.cfg, stream))
    assert r.curve.loss.iloc[0] == pytest.approx(float(own.loss[0]), rel=1e-6)
    spec = fam.perm_spec(a.cfg)
    perms = random_permutation(spec, torch.Generator().manual_seed(5))
    c = fam.model_from_state(a.cfg, apply_permutation(a.state_dict(), spec, perms))
    tok = stream[:120].view(10, 12)
    al = align_models(a, c, tok)
    for n, t in a.state_dict().items():
        torch.testing.assert_close(al.model.state_dict()[n], t, rtol=0, atol=0, msg=n)
    wrong = PermutationSpec(tuple(g for g in spec.groups if g.name != "residual") + (
        UnitGroup("residual", 16, tuple(ax for ax in spec["residual"].axes if ax.param != "layers.1.ff1.weight")),))
    with pytest.raises(SpecError, match="'residual' on .*layers.1.ff2.weight"):
        align_models(a, c, tok, spec=wrong)


def test_data_loaders_and_family_splits_given_as_x_y():
    from torch.utils.data import DataLoader, TensorDataset

    x, y = data()
    a, b = mlp(0), mlp(1)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)  # read once: identical batches per alpha
    r1 = linear_path(a, b, loader, alphas=5)
    r2 = linear_path(a, b, (x, y), alphas=5)
    np.testing.assert_allclose(r1.curve.loss, r2.curve.loss, rtol=1e-6)
    from lmc_core import MLPConfig, family_of, interpolation_curve
    from lmc_core.ensemble import copy_state

    cfg = MLPConfig(d_in=12, hidden=(16,), n_classes=4)
    fam = family_of(cfg)
    state = fam.init(cfg, [1, 2])
    curve = interpolation_curve(cfg, copy_state(state, 0), copy_state(state, 1), {"test": (x, y)}, [0.0, 1.0])
    assert len(curve) == 2  # (x, y) tensors are a split of the MLP family (it was a bare TypeError)
    m = fam.model_from_state(cfg, copy_state(state, 0))
    n = fam.model_from_state(cfg, copy_state(state, 1))
    r = linear_path(m, n, (x, y), alphas=[0.0, 1.0])
    assert r.mode == "family ensemble"
    np.testing.assert_allclose(r.curve.loss, curve.loss, rtol=1e-12)


@pytest.mark.parametrize("prenorm", [True, False])
def test_opt_checkpoints_convert_and_align(prenorm, tmp_path):
    cfg = transformers.OPTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, ffn_dim=24, num_attention_heads=2,
                                 max_position_embeddings=12, word_embed_proj_dim=16, do_layer_norm_before=prenorm)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        hf = transformers.OPTForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    a = load_hf(tmp_path)  # parity with transformers' logits checked inside
    assert a.cfg.arch == ("prenorm" if prenorm else "postnorm")
    tok = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a(tok[None])[0].view(3, 12, 40), hf(tok).logits, rtol=1e-4, atol=1e-5)
    fam = lmc_core.family_of(a.cfg)
    spec = fam.perm_spec(a.cfg)
    c = fam.model_from_state(a.cfg, apply_permutation(a.state_dict(), spec,
                                                      random_permutation(spec, torch.Generator().manual_seed(2))))
    stream = torch.randint(0, 40, (241,), generator=torch.Generator().manual_seed(3))
    r = linear_path(a, a, stream, alphas=3)
    assert (r.barriers.barrier.abs() < 1e-6).all()  # a model interpolated with itself is flat
    al = align_models(a, c, stream[:240].view(20, 12))
    for n, t in a.state_dict().items():
        assert torch.equal(al.model.state_dict()[n], t), n
    with pytest.raises(lmc_core.ConversionError, match="word_embed_proj_dim"):
        load_hf(transformers.OPTForCausalLM(transformers.OPTConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=1, ffn_dim=24, num_attention_heads=2,
            max_position_embeddings=12, word_embed_proj_dim=8)))
