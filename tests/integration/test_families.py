"""The Family seam: any model family trains, stores, evaluates and interpolates through the same code;
per-copy settings, the Fisher penalty, frozen divergent copies and monitored metrics."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmc_core.config import ConfigError, CopySettings, RunSpec, Seeds, TrainConfig, config_hash, to_dict
from lmc_core.data.batches import Examples
from lmc_core.data.modular import ModularDataConfig, modular_data
from lmc_core.data.vectors import VectorDataConfig
from lmc_core.ensemble import copy_state
from lmc_core.families import SeqClassConfig, family_of, get, spec_from_dict
from lmc_core.train.fisher import fisher_penalty, sampled_labels
from lmc_core.analysis.interpolate import alpha_grid, interpolation_curve
from lmc_core.models.mlp import MLPConfig
from lmc_core.runs.store import RunStore
from lmc_core.runs.checkpoints import train_resumable
from lmc_core.train import TrainingDiverged, train_copies

from conftest import tiny_model, tiny_spec


def blobs(n=600, d=8, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g) * 2
    y = torch.randint(0, c, (n,), generator=g)
    return Examples(x=centers[y] + torch.randn(n, d, generator=g), y=y)


def mlp_spec(seeds, per_copy=(), **train):
    train = {"steps": 20, "batch_size": 32, "optimizer": "sgd", "lr": 0.1, "schedule": "constant", "clip_norm": None,
             **train}
    return RunSpec(model=MLPConfig(d_in=8, hidden=(16, 16), n_classes=3), data=VectorDataConfig(),
                   train=TrainConfig(**train), seeds=tuple(seeds), per_copy=tuple(per_copy))


def close(a, b, **kw):
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-6, **kw)


def test_specs_of_every_family_round_trip_and_never_collide():
    from dataclasses import fields, replace

    specs = [mlp_spec([Seeds(1, 1, 1)]), tiny_spec(), RunSpec(model=SeqClassConfig(), data=ModularDataConfig()),
             replace(tiny_spec(), init_from="abc@10", per_copy=(CopySettings(lr=0.1),))]
    assert {f.name for f in fields(RunSpec)} == set(to_dict(specs[-1])), "every RunSpec field is stored"
    for s in specs:
        assert spec_from_dict(to_dict(s)) == s
    assert len({config_hash(s) for s in specs}) == len(specs)
    for s in specs:  # every field survives the round trip, so a stored run is found again
        assert spec_from_dict(to_dict(s)) == s
    assert family_of(specs[0].model).name == "mlp" and family_of(specs[2].model).name == "seqcls"
    # equal non-default fields in different config types still differ
    assert config_hash(RunSpec(model=MLPConfig(d_in=7))) != config_hash(RunSpec(model=SeqClassConfig()))


def test_per_copy_learning_rates_and_weight_decay_equal_separate_runs():
    data = blobs()
    seeds = [Seeds(1, 1, 1), Seeds(2, 2, 2), Seeds(3, 3, 3)]
    settings = [CopySettings(lr=0.05), CopySettings(lr=0.2, weight_decay=0.01), CopySettings(weight_decay=0.1)]
    for opt in ("sgd", "adam", "adamw"):
        lr = 0.1 if opt == "sgd" else 1e-2
        sets = [CopySettings(lr=None if c.lr is None else c.lr * lr / 0.1, weight_decay=c.weight_decay) for c in settings]
        grid = train_copies(mlp_spec(seeds, sets, optimizer=opt, lr=lr, momentum=0.9 if opt == "sgd" else 0.0),
                            data, "cpu", progress=False)
        for k, (s, c) in enumerate(zip(seeds, sets)):
            alone = train_copies(mlp_spec([s], optimizer=opt, momentum=0.9 if opt == "sgd" else 0.0,
                                          lr=c.lr or lr, weight_decay=c.weight_decay or 0.0), data, "cpu",
                                 progress=False)
            close(copy_state(grid.state, k), alone.state)
    with pytest.raises(ConfigError, match="per_copy"):
        mlp_spec(seeds, settings[:2]).validate()


def test_fisher_penalty_equals_the_gradient_norm_of_a_plain_model():
    fam = get("mlp")
    cfg = MLPConfig(d_in=8, hidden=(16,), n_classes=3)
    model = fam.build(cfg, 2).init_weights([1, 2])
    data = blobs(40)
    batch = {n: t[None].expand(2, *t.shape) for n, t in data.tensors.items()}
    pen = fisher_penalty(fam, model, batch, None, "empirical", [0, 0], [0, 0])
    for k in range(2):
        w = [model.layers[0].weight[k].detach().clone().requires_grad_(),
             model.layers[0].bias[k].detach().clone().requires_grad_(),
             model.layers[1].weight[k].detach().clone().requires_grad_(),
             model.layers[1].bias[k].detach().clone().requires_grad_()]
        logits = F.relu(data["x"] @ w[0] + w[1]) @ w[2] + w[3]
        g = torch.autograd.grad(F.cross_entropy(logits, data["y"]), w)
        assert pen[k].item() == pytest.approx(sum((x ** 2).sum() for x in g).item(), rel=1e-5)
    pen.sum().backward()  # double backward
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_sampled_labels_are_deterministic_independent_of_k_and_follow_the_model():
    logits = torch.randn(3, 5000, 4)
    a = sampled_labels(logits, [7, 8, 9], [3, 3, 3])
    b = sampled_labels(logits[1:2], [8], [3])
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])
    peaked = torch.tensor([[[0.0, 3.0, 0.0, 0.0]]]).expand(1, 20000, 4)
    freq = (sampled_labels(peaked, [1], [0]) == 1).float().mean().item()
    assert freq == pytest.approx(math.exp(3) / (math.exp(3) + 3), abs=0.02)


def test_fisher_training_works_for_a_dropout_free_transformer_and_changes_the_weights(stream):
    spec0 = tiny_spec([Seeds(0, 1, 2)], steps=4, model=tiny_model(dropout=0.0))
    plain = train_copies(spec0, stream, "cpu", progress=False)
    spec1 = tiny_spec([Seeds(0, 1, 2)], steps=4, model=tiny_model(dropout=0.0), fisher=1.0)
    pen = train_copies(spec1, stream, "cpu", progress=False)
    assert pen.history.penalty.gt(0).all()
    assert any(not torch.equal(plain.state[n], pen.state[n]) for n in plain.state)


def test_a_diverging_copy_is_frozen_and_the_others_finish(tmp_path):
    data = blobs()
    seeds = [Seeds(1, 1, 1), Seeds(2, 2, 2), Seeds(3, 3, 3)]
    sets = [CopySettings(), CopySettings(lr=1e6), CopySettings(lr=0.05)]
    store = RunStore(tmp_path)
    spec = mlp_spec(seeds, sets, on_divergence="freeze", save_every=5)
    run = store.get(spec, data, "cpu", progress=False)
    assert list(run.diverged) == [1]
    for k in (0, 2):
        alone = train_copies(mlp_spec([seeds[k]], lr=sets[k].lr or 0.1), data, "cpu", progress=False)
        close(copy_state(run.state, k), alone.state)
    assert run.history[run.history["diverged"] == 1]["copy"].tolist() == [1]
    assert store.load(spec).diverged == run.diverged  # recorded in the store
    with pytest.raises(TrainingDiverged):
        train_copies(mlp_spec(seeds, sets), data, "cpu", progress=False)


def test_monitored_accuracy_is_logged_during_training():
    data = modular_data(ModularDataConfig(p=7, train_frac=0.5))
    cfg = SeqClassConfig(vocab_size=8, n_out=7, d_model=16, n_heads=2, d_ff=32)
    spec = RunSpec(model=cfg, data=ModularDataConfig(p=7, train_frac=0.5),
                   train=TrainConfig(steps=12, batch_size=len(data["train"]), optimizer="adamw", lr=1e-2,
                                     schedule="constant", clip_norm=None, eval_every=4),
                   seeds=(Seeds(1, 1, 1), Seeds(2, 2, 2)))
    res = train_resumable(spec, data["train"], "cpu", progress=False, monitor={"test": data["test"]})
    h = res.history.dropna(subset=["test_acc"])
    assert sorted(h.step.unique()) == [4, 8, 12] and h["copy"].nunique() == 2
    assert h.test_acc.between(0, 1).all()


def test_interpolation_of_any_family_reproduces_the_endpoints():
    data = blobs()
    run = train_copies(mlp_spec([Seeds(1, 1, 1), Seeds(2, 2, 2)]), data, "cpu", progress=False)
    cfg = MLPConfig(d_in=8, hidden=(16, 16), n_classes=3)
    a, b = copy_state(run.state, 0), copy_state(run.state, 1)
    curve, res = interpolation_curve(cfg, a, b, {"test": data}, alpha_grid(5), keep=("examples",))
    fam = family_of(cfg)
    ends = fam.evaluate(cfg, run.state, fam.eval_examples(cfg, data), keep=("examples",))
    assert curve.loss.iloc[0] == pytest.approx(ends.loss[0]) and curve.loss.iloc[-1] == pytest.approx(ends.loss[1])
    assert res["test"].per_example_loss.shape == (5, len(data))
    assert "ppl" not in curve  # perplexity is a language-model metric
