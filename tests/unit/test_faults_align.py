"""Faults injected into the alignment and Hugging Face routes (align_models, the align package, load_hf): each must
end in our own error naming the argument and what to change, before any work, or in the corrected result. Tiny
random models only; Hugging Face checkpoints are built from tiny configs and saved into tmp_path (nothing is
downloaded)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import lmc_core
from lmc_core import align_models, load_hf, rng
from lmc_core.align import Axis, PermutationSpec, UnitGroup, apply_permutation, match_weights, random_permutation
from lmc_core.align import weight_matching
from lmc_core.align.activation_matching import correlation
from lmc_core.align.auto import auto_spec
from lmc_core.align.check import ArgumentError, SpecError, check_spec
from lmc_core.align.learned import learned_alignment, learned_from_best, sinkhorn
from lmc_core.align.orthogonal import (ResidualSpec, procrustes, random_invertible, random_orthogonal,
                                       residual_alignment, residual_features)
from lmc_core.analysis import align_models as AM
from lmc_core.analysis.pair_alignment import Learning, classifier_pair, path_curves, permutation_ends
from lmc_core.config import ConfigError, model_preset
from lmc_core import MLPConfig
from lmc_core.families import family_of

torch.set_num_threads(1)


def mlp(seed: int) -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4)).eval()


def x_sample(n=24, seed=0):
    return torch.randn(n, 12, generator=torch.Generator().manual_seed(seed))


def family_pair():
    cfg = MLPConfig(d_in=12, hidden=(16,), n_classes=4)
    fam = family_of(cfg)
    st = fam.init(cfg, [1, 2])
    return [fam.model_from_state(cfg, {n: t[i:i + 1] for n, t in st.items()}) for i in (0, 1)]


class TiedLM(nn.Module):
    """A tiny LM whose output layer is its input embedding (tied weights), with a residual MLP block."""

    def __init__(self, vocab=11, d=8, hidden=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
        self.out = nn.Linear(d, vocab, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, tokens):
        h = self.emb(tokens)
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return self.out(h)


def tied(seed: int) -> TiedLM:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TiedLM().eval()


TOKENS = torch.randint(0, 11, (6, 5), generator=torch.Generator().manual_seed(4))


# ---------------------------------------------------------------- align_models: the sample


@pytest.mark.parametrize("route", ["auto", "family"])
def test_a_sample_of_the_wrong_width_names_the_sample(route):
    a, b = (mlp(0), mlp(1)) if route == "auto" else family_pair()
    with pytest.raises(ValueError, match=r"sample: model_a cannot run on it .*give one batch of the model's own"):
        align_models(a, b, torch.randn(10, 7))


@pytest.mark.parametrize("sample, name", [(torch.randn(0, 12), "sample"), ((torch.randn(0, 12), torch.zeros(0)),
                                                                           r"sample\[0\]")])
@pytest.mark.parametrize("method", ["weight", "activation"])
def test_an_empty_sample_is_refused_naming_it(sample, name, method):
    with pytest.raises(ValueError, match=name + r" is empty \(shape \(0, 12\)\)"):
        align_models(mlp(0), mlp(1), sample, method=method)
    with pytest.raises(ValueError, match=name + " is empty"):
        align_models(*family_pair(), sample, method=method)


def test_an_empty_or_non_finite_output_is_refused_by_the_spec_check():
    spec = PermutationSpec((UnitGroup("h", 3, (Axis("w", 1),)),))
    state = {"w": torch.randn(1, 3)}
    with pytest.raises(ValueError, match="outputs on the sample are empty"):
        check_spec(spec, state, lambda s: torch.empty(0))
    with pytest.raises(ValueError, match="outputs on the sample are not finite"):
        check_spec(spec, state, lambda s: torch.full((2,), float("nan")))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_sample_is_called_not_finite_not_a_wrong_spec(bad):
    x = x_sample()
    x[3, 2] = bad
    for sample, name in ((x, "sample"), ((x, torch.zeros(24)), r"sample\[0\]")):
        with pytest.raises(ValueError, match=name + r" is not finite \((1 NaN, 0|0 NaN, 1) infinite"):
            align_models(mlp(0), mlp(1), sample)
    with pytest.raises(ValueError, match="sample is not finite"):
        align_models(*family_pair(), x)

    class Kw(nn.Module):
        def __init__(self, seed):
            super().__init__()
            self.net = mlp(seed)

        def forward(self, features):
            return self.net(features)

    with pytest.raises(ValueError, match=r"sample\['features'\] is not finite"):
        align_models(Kw(0), Kw(1), {"features": x})


def test_outputs_that_overflow_are_named_as_such():
    a = mlp(0)
    with torch.no_grad():
        a[0].weight.fill_(1.0)  # finite weights, but 12 inputs of 1e38 sum beyond float32
    with pytest.raises(ValueError, match="model_a's outputs on the sample are not finite although its weights are"):
        align_models(a, mlp(1), torch.full((4, 12), 1e38))


# ---------------------------------------------------------------- align_models and the align package: numbers


@pytest.mark.parametrize("kw, name", [({"max_sweeps": 0}, "max_sweeps"), ({"max_sweeps": -1}, "max_sweeps"),
                                      ({"max_sweeps": 2.5}, "max_sweeps"), ({"max_sweeps": True}, "max_sweeps"),
                                      ({"seed": 1.5}, "seed"), ({"seed": "0"}, "seed"),
                                      ({"max_sweeps": 10**12}, "max_sweeps"), ({"seed": 2**64}, "seed"),
                                      ({"seed": -1}, "seed"), ({"method": "bogus"}, "method")])
def test_align_models_checks_its_numbers_before_any_work(kw, name, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(AM, "auto_spec", no_work)
    monkeypatch.setattr(AM, "match_weights", no_work)
    with pytest.raises(ConfigError, match=f"{name}="):
        align_models(mlp(0), mlp(1), x_sample(), **kw)
    with pytest.raises(ConfigError, match=f"{name}="):
        align_models(*family_pair(), x_sample(), **kw)


def test_weight_matching_refuses_zero_sweeps_and_bad_numbers():
    ms = auto_spec(mlp(0), x_sample())
    a, b = ms.stacked(mlp(0).state_dict()), ms.stacked(mlp(1).state_dict())
    for kw, name in (({"max_sweeps": 0}, "max_sweeps"), ({"tol": -1.0}, "tol"), ({"tol": float("nan")}, "tol"),
                     ({"seed": 0.5}, "seed"), ({"threads": 0}, "threads")):
        with pytest.raises(ArgumentError, match=f"{name}="):
            weight_matching(ms.spec, a, b, **kw)
    with pytest.raises(ArgumentError, match="restarts=0"):
        match_weights(ms.spec, a, b, restarts=0)
    with pytest.raises(ArgumentError, match="restarts=.* out of range"):  # a size has an upper bound too
        match_weights(ms.spec, a, b, restarts=10**9)
    with pytest.raises(ArgumentError, match="seed="):
        match_weights(ms.spec, a, b, seed=None)
    perms, info = weight_matching(ms.spec, a, b, max_sweeps=1)  # the smallest valid value still matches
    assert info.sweeps == 1


def test_the_numbers_of_the_align_package_are_checked():
    spec = PermutationSpec((UnitGroup("h", 3, (Axis("w", 1),)),))
    state = {"w": torch.randn(1, 3)}
    cases = [
        (lambda: check_spec(spec, state, lambda s: s["w"], rtol=-1e-4), "rtol="),
        (lambda: check_spec(spec, state, lambda s: s["w"], atol=float("inf")), "atol="),
        (lambda: check_spec(spec, state, lambda s: s["w"], seed=0.5), "seed="),
        (lambda: correlation(torch.randn(5, 3), torch.randn(5, 3), eps=0.0), "eps="),
        (lambda: sinkhorn(torch.zeros(3, 3), iters=0), "iters="),
        (lambda: random_orthogonal(0, rng.generator(1)), "d="),
        (lambda: random_invertible(4, rng.generator(1), condition=0.5), "condition="),
        (lambda: ResidualSpec(0, (), ()), "size="),
        (lambda: residual_alignment(spec, ResidualSpec(3, (Axis("w", 1),), ()), state, state, rounds=-1), "rounds="),
        (lambda: residual_alignment(spec, ResidualSpec(3, (Axis("w", 1),), ()), state, state, tol=-1), "tol="),
        (lambda: Learning(steps=0), "steps="),
        (lambda: Learning(lr=0.0), "lr="),
        (lambda: Learning(batch=0), "batch="),
        (lambda: Learning(heldout=0), "heldout="),
        (lambda: Learning(units="yes"), "units="),
        (lambda: permutation_ends(None, None, state, state, None, seed=0, restarts=0), "restarts="),
        (lambda: permutation_ends(None, None, state, state, None, seed=1.5), "seed="),
        (lambda: classifier_pair(None, None, state, state, None, None, [0.0, 1.0], 0, 1, "bogus", "cpu"),
         "definition="),
        (lambda: classifier_pair(None, None, state, state, None, None, [0.2, 1.0], 0, 1, "mean", "cpu"), "alphas"),
        (lambda: path_curves(None, None, {}, [], None, [0.0, float("nan")], 8, "cpu"), "alphas="),
        (lambda: path_curves(None, None, {}, [], None, [0.0, 1.0], 0, "cpu"), "batch_size="),
    ]
    for i, (call, name) in enumerate(cases):  # the align package raises its ArgumentError (it imports no config)
        with pytest.raises(ArgumentError if i < 10 else ConfigError, match=name):
            call()
    with pytest.raises(ValueError, match=r"site 0: activations must be \[N, units\] of one shape"):
        from lmc_core.align import activation_matching
        activation_matching(spec, {"h": [torch.randn(4, 3)]}, {"h": [torch.randn(5, 3)]})


# ---------------------------------------------------------------- learned alignment: batches


def toy_learning():
    """A one-tensor 'model' whose residual map is learned: loss = |midpoint - 1|^2."""
    a, b = {"w": torch.randn(1, 3, generator=rng.generator(1))}, {"w": torch.randn(1, 3, generator=rng.generator(2))}
    rspec = ResidualSpec(3, (Axis("w", 1),), ())
    loss = lambda state, batch: ((state["w"] - 1.0) ** 2).sum(-1)  # noqa: E731
    return a, b, rspec, loss


def test_learned_alignment_with_fewer_batches_than_steps_says_so():
    a, b, rspec, loss = toy_learning()
    with pytest.raises(ValueError, match=r"batches holds 2 batches but steps=5 .*give at least 5 batches"):
        learned_alignment(a, b, loss, [{}, {}], [{}], rspec=rspec, steps=5)
    with pytest.raises(ValueError, match=r"batches ran out after 2 of steps=5 .*give at least 5 batches"):
        learned_alignment(a, b, loss, iter([{}, {}]), [{}], rspec=rspec, steps=5)
    with pytest.raises(ValueError, match="heldout must be a non-empty list"):
        learned_alignment(a, b, loss, [{}] * 5, [], rspec=rspec, steps=5)
    with pytest.raises(ValueError, match="candidates is empty"):
        learned_from_best(a, {}, loss, [{}] * 5, [{}], rspec=rspec, steps=5)
    with pytest.raises(ValueError, match="batches holds 1 batches but steps=5"):
        learned_from_best(a, {"x": b}, loss, [{}], [{}], rspec=rspec, steps=5)
    for kw, name in (({"steps": 0}, "steps="), ({"steps": 2.0}, "steps="), ({"lr": 0.0}, "lr="),
                     ({"perm_lr": -1.0}, "perm_lr="), ({"init_scale": float("nan")}, "init_scale=")):
        with pytest.raises(ArgumentError, match=name):
            learned_alignment(a, b, loss, [{}] * 5, [{}], rspec=rspec, **kw)
    out, info = learned_alignment(a, b, loss, iter([{}] * 5), [{}], rspec=rspec, steps=5)  # exactly enough
    assert len(info.losses) == 5


# ---------------------------------------------------------------- align_models: tied weights


def planted_tied(model: TiedLM, seed=3) -> TiedLM:
    """The model with every permutable unit permuted (its automatic spec): same function, tie kept."""
    ms = auto_spec(model, TOKENS)
    perms = random_permutation(ms.spec, torch.Generator().manual_seed(seed))
    other = tied(99)
    other.load_state_dict(ms.unstacked(apply_permutation(ms.stacked(model.state_dict()), ms.spec, perms),
                                       model.state_dict()))
    return other.eval()


@pytest.mark.parametrize("method", ["weight", "activation"])
def test_tied_embeddings_are_aligned_once_and_stay_tied(method):
    a, b = tied(0), tied(1)
    al = align_models(a, b, TOKENS, method=method)
    assert al.model.out.weight is al.model.emb.weight  # the tie survives in B's result
    assert b.out.weight is b.emb.weight and torch.equal(b.emb.weight, tied(1).emb.weight)  # B itself untouched
    with torch.no_grad():
        torch.testing.assert_close(al.model(TOKENS), b(TOKENS), rtol=1e-5, atol=1e-5)  # B's function unchanged
    places = [ax.param for g in al.spec.spec.groups for ax in g.axes]
    assert "emb.weight" in places and "out.weight" not in places  # the tensor is matched once, under its first name
    residual = next(g for g in al.spec.spec.groups if any(ax.param == "emb.weight" for ax in g.axes))
    assert not np.array_equal(al.perms[residual.name], np.arange(residual.size))  # it really was permuted
    # a planted permutation of A is undone exactly, tie included
    c = planted_tied(a)
    back = align_models(a, c, TOKENS, method=method).model
    for n, t in a.state_dict().items():
        torch.testing.assert_close(back.state_dict()[n], t, rtol=0, atol=1e-6, msg=n)
    assert back.out.weight is back.emb.weight


def test_a_spec_that_cannot_respect_a_tie_is_refused_naming_the_tied_parameters():
    stream = (Axis("fc1.weight", 2), Axis("fc2.weight", 1), Axis("fc2.bias", 1))
    split = PermutationSpec((UnitGroup("res", 8, (Axis("emb.weight", 2),) + stream),
                             UnitGroup("res2", 8, (Axis("out.weight", 2),))))
    with pytest.raises(SpecError, match=r"tied parameters \['emb.weight', 'out.weight'\] .* permuted differently"):
        align_models(tied(0), tied(1), TOKENS, spec=split)
    for names in (("emb.weight",), ("emb.weight", "out.weight")):  # one name, or both alike: the tie is respected
        spec = PermutationSpec((UnitGroup("res", 8, tuple(Axis(n, 2) for n in names) + stream),))
        al = align_models(tied(0), tied(1), TOKENS, spec=spec)
        assert al.model.out.weight is al.model.emb.weight and al.max_diff_b < 1e-5

    untied = tied(1)
    untied.out.weight = nn.Parameter(untied.emb.weight.detach().clone())
    with pytest.raises(ValueError, match="tie different parameters"):
        align_models(tied(0), untied, TOKENS)


# ---------------------------------------------------------------- load_hf


transformers = pytest.importorskip("transformers")


def gpt2(seed: int, **kw):
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=12, n_embd=16, n_layer=2, n_head=2, **kw)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return transformers.GPT2LMHeadModel(cfg).eval()


def test_a_truncated_or_missing_weights_file_is_named(tmp_path):
    gpt2(0).save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(lmc_core.ConversionError, match=r"model\.safetensors' is truncated or corrupt \(its tensors "
                                                       r"need \d+ bytes, the file has \d+\)"):
        load_hf(tmp_path)
    f.write_bytes(data[:5])
    with pytest.raises(lmc_core.ConversionError, match=r"model\.safetensors' is truncated .*8-byte header"):
        load_hf(tmp_path)
    f.unlink()
    with pytest.raises(FileNotFoundError, match="holds no weights"):
        load_hf(tmp_path)
    f.write_bytes(data)
    assert isinstance(load_hf(tmp_path), lmc_core.TransformerLM)  # the complete file loads
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(lmc_core.ConversionError, match=r"config\.json' cannot be read"):
        load_hf(tmp_path)


@pytest.mark.parametrize("kw, name", [({"context": 0}, "context="), ({"context": 2.5}, "context="),
                                      ({"n_classes": 1}, "n_classes="), ({"head_seed": 0.5}, "head_seed="),
                                      ({"check": "no"}, "check=")])
def test_load_hf_checks_its_numbers_before_reading(kw, name, tmp_path):
    with pytest.raises(ConfigError, match=name):
        load_hf(tmp_path / "not-read", **kw)  # refused before the (missing) folder is looked at


def test_pretrained_routes_check_their_counts():
    from lmc_core.models import pretrained as P

    for call, name in ((lambda: P.stack_pretrained(None, 0, {}), "k="),
                       (lambda: P.stack_pretrained(None, 1, {}, [0.5]), r"head_seeds\[0\]="),
                       (lambda: P.load_minilm(k=0), "k="), (lambda: P.from_pretrained_bert("x", k=-1), "k="),
                       (lambda: P.from_pretrained_gpt2("x", k=0), "k="),
                       (lambda: P.from_pretrained_gpt2("x", context=0), "context=")):
        with pytest.raises(ConfigError, match=name):
            call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_gpt2_checkpoints_load(dtype, tmp_path):
    """An fp16 / bf16 checkpoint used to be refused ('the converter does not reproduce this checkpoint': an fp32
    tolerance on an fp16 forward); the check now runs both models in float32 and the model is float32."""
    hf = gpt2(0).to(dtype)
    hf.save_pretrained(tmp_path)
    for source in (tmp_path, hf):
        ours = load_hf(source)
        assert all(t.dtype == torch.float32 for t in ours.state_dict().values() if t.is_floating_point())
        assert torch.equal(ours.state_dict()["tok_emb"][0], hf.transformer.wte.weight.float())  # exact values
        tok = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            theirs = gpt2(0).to(dtype).float()(tok).logits
            torch.testing.assert_close(ours(tok[None])[0].view(3, 12, 40), theirs, rtol=1e-4, atol=1e-5)
    assert hf.dtype == dtype  # the caller's model is not converted in place


# ---------------------------------------------------------------- Procrustes: the unused direction


LM = model_preset("tinygpt", vocab_size=30, d_model=16, n_heads=2, n_layers=2, d_ff=24, context=6)


def folded_features():
    fam = family_of(LM)

    def noisy(seed):
        st = fam.init(LM, [seed])
        g = rng.generator(seed, 77)
        return {n: t + 0.1 * torch.randn(t.shape, generator=g) for n, t in st.items()}

    cfg, a, _ = fam.residual_maps(LM, noisy(1))
    _, b, _ = fam.residual_maps(LM, noisy(2))
    x = torch.randint(0, LM.vocab_size, (40, LM.context), generator=rng.generator(3, 5))
    collect = lambda s: fam.activations(cfg, s, x)  # noqa: E731
    return residual_features(collect, a), residual_features(collect, b)


def test_procrustes_maps_the_unused_mean_direction_to_itself_whatever_the_svd_signs(monkeypatch):
    """After LayerNorm folding neither model uses the stream's mean direction n = 1/sqrt(d); its singular value is
    rounding, so the SVD's sign there used to decide whether the map sent n to +n or -n (here: -n). The convention
    maps it to +n, and the result does not change when the SVD returns the other (equally valid) signs."""
    xa, xb = folded_features()
    d = xa.shape[1]
    n = torch.full((d,), d ** -0.5, dtype=torch.float64)
    assert float((xa @ n).norm() / xa.norm()) < 1e-6 and float((xb @ n).norm() / xb.norm()) < 1e-6
    q = procrustes(xb, xa)
    torch.testing.assert_close(q.T @ q, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(n @ q, n, rtol=0, atol=1e-5)  # identity on the unused direction (the old: -n)

    svd = torch.linalg.svd

    def flipped(c, *args, **kw):  # a valid SVD too: the vectors of zero singular values change sign on one side
        u, s, vh = svd(c, *args, **kw)
        null = s <= 1e-9 * s[0]
        return u * torch.where(null, -1.0, 1.0).to(u.dtype), s, vh

    monkeypatch.setattr(torch.linalg, "svd", flipped)
    torch.testing.assert_close(procrustes(xb, xa), q, rtol=0, atol=1e-8)
    monkeypatch.undo()
    # and on a rotated copy of both models' coordinates (a rotation fixing n), the map is the rotated map
    basis = torch.linalg.qr(torch.cat([n[:, None], torch.eye(d, dtype=torch.float64)[:, : d - 1]], 1))[0]
    r = basis @ torch.block_diag(torch.ones(1, 1, dtype=torch.float64),
                                 random_orthogonal(d - 1, rng.generator(6))) @ basis.T
    torch.testing.assert_close(procrustes(xb @ r, xa @ r), r.T @ q @ r, rtol=0, atol=1e-8)
    # the convention only settles the unused direction: the fit is still Procrustes' optimum (scipy's)
    from scipy.linalg import orthogonal_procrustes

    best = torch.from_numpy(orthogonal_procrustes(xb.numpy(), xa.numpy())[0])
    assert math.isclose(float((xb @ q - xa).norm()), float((xb @ best - xa).norm()), rel_tol=1e-9)


def test_auto_spec_names_a_sample_the_model_cannot_take(capfd):
    with pytest.raises(ValueError, match=r"sample: Sequential cannot run on it \(RuntimeError: mat1 and mat2"):
        auto_spec(mlp(0), torch.randn(4, 7))
    assert "Traceback" not in capfd.readouterr().err  # no library traceback printed on the way


def test_the_assignment_steps_check_their_inputs():
    from lmc_core.align.lap import assign, assign_heads

    with pytest.raises(ValueError, match="square cost matrix"):
        assign(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        assign(np.array([[0.0, np.nan], [1.0, 0.0]]))
    with pytest.raises(ArgumentError, match="n_heads=0"):
        assign_heads(np.zeros((4, 4)), np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="n_heads=3"):
        assign_heads(np.zeros((4, 4)), np.zeros((4, 4)), 3)


def test_half_precision_opt_and_bert_checkpoints_load_too(tmp_path):
    """The sibling routes of the fp16 GPT-2 fault: OPT's and the encoders' parity checks run in float32 as well."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        opt = transformers.OPTForCausalLM(transformers.OPTConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=2, ffn_dim=24, num_attention_heads=2,
            max_position_embeddings=12, word_embed_proj_dim=16)).eval().half()
        bert = transformers.BertModel(transformers.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=20)).eval().to(torch.bfloat16)
    opt.save_pretrained(tmp_path)
    assert isinstance(load_hf(tmp_path), lmc_core.TransformerLM)
    enc = load_hf(bert)
    assert enc.state_dict()["word_emb"].dtype == torch.float32 and bert.dtype == torch.bfloat16
