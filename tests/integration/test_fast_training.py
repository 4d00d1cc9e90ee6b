"""The faster training paths: counter-based dropout masks on a CPU, compiled steps and bf16 autocast on a CPU.

Each must keep the guarantees the eager fp32 trainer gives: same seeds give the same weights, copy k of an
ensemble equals a lone run, masks do not depend on K, and (bf16) barriers agree with fp32's within the spread
between initialisations."""
import dataclasses

import numpy as np
import pytest
import torch

from lmc_core import rng
from lmc_core.analysis.barrier import barrier
from lmc_core.analysis.interpolate import interpolation_curve
from lmc_core.config import ConfigError, CopySettings, Seeds, TrainConfig, model_preset
from lmc_core.ensemble import copy_state
from lmc_core.nn.dropout import TABLE_SITES, DropoutSource
from lmc_core.train import train_copies
from lmc_core.train import trainer as trainer_mod

from conftest import tiny_model, tiny_spec

SEEDS = [Seeds(0, 1, 2), Seeds(0, 3, 4), Seeds(7, 5, 6)]
HASH = {"dropout_masks": "hash"}
COMPILED = {"dropout_masks": "hash", "compile": True}
FUSED = {"fused_cross_entropy": True}


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


def close(a, b, rtol=1e-5, atol=1e-6):
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=rtol, atol=atol)


def repeats_and_copies_are_lone_runs(stream, **train):
    """Train SEEDS as one ensemble with `train`: assert the same seeds give the same weights and copy k equals a lone
    run; returns the ensemble's weights."""
    ens = train_copies(tiny_spec(SEEDS, **train), stream, "cpu", progress=False)
    again = train_copies(tiny_spec(SEEDS, **train), stream, "cpu", progress=False)
    assert same(ens.state, again.state)
    for k, s in enumerate(SEEDS):
        one = train_copies(tiny_spec([s], **train), stream, "cpu", progress=False)
        close(copy_state(ens.state, k), one.state)
    return ens.state


def test_hash_masks_are_the_same_numbers_compiled_and_eager():
    keys = torch.tensor([rng.signed(rng.mix(s, 3)) for s in (1, 2, 99)], dtype=torch.int64)
    shapes = ((560, 64), (4, 2, 35, 35), (7,))
    drop = DropoutSource([1, 2, 99], [3, 3, 3], "cpu", "hash")

    def draws(k, d):  # uniforms, and keep masks from the site table (site 5) and beyond it (site 70)
        return ([rng.uniform(k, 5, shape) for shape in shapes] + [d.keep(5, shape, 0.2) for shape in shapes]
                + [d.keep(TABLE_SITES + 6, (7,), 0.1)])

    # one graph for all the draws: a cold compile costs seconds per graph on two cores
    compiled = torch.compile(draws, dynamic=False, fullgraph=True)(keys, drop)
    for got, want in zip(compiled, draws(keys, drop)):
        assert torch.equal(got, want)
    for shape, got in zip(shapes, compiled[3:]):  # keep = uniform >= p, decided on the integers
        assert torch.equal(got, rng.uniform(keys, 5, shape) >= 0.2), shape
    assert torch.equal(compiled[-1], rng.uniform(keys, TABLE_SITES + 6, (7,)) >= 0.1)


def test_hash_masks_keep_copy_k_equal_to_a_lone_run(stream):
    ens = train_copies(tiny_spec(SEEDS, **HASH), stream, "cpu", progress=False)
    for k, s in enumerate(SEEDS):
        one = train_copies(tiny_spec([s], **HASH), stream, "cpu", progress=False)
        close(copy_state(ens.state, k), one.state)
    default = train_copies(tiny_spec(SEEDS), stream, "cpu", progress=False)
    assert not same(default.state, ens.state), "dropout_masks='hash' drew the CPU generators' masks"


def test_a_compiled_run_repeats_itself_and_equals_the_eager_run_up_to_rounding(stream):
    first = train_copies(tiny_spec(SEEDS, **COMPILED), stream, "cpu", progress=False)
    again = train_copies(tiny_spec(SEEDS, **COMPILED), stream, "cpu", progress=False)
    assert same(first.state, again.state)
    # the eager run with the same masks, whose copies equal lone runs (the test above): one compile only, as a
    # cold compile costs tens of seconds on two cores
    eager = train_copies(tiny_spec(SEEDS, **HASH), stream, "cpu", progress=False)
    close(first.state, eager.state, rtol=1e-4, atol=1e-5)  # the same masks and updates; only rounding differs


def test_compile_and_bf16_are_refused_before_training_where_they_cannot_work(stream, monkeypatch):
    with pytest.raises(ValueError, match="dropout_masks='hash'"):
        train_copies(tiny_spec(SEEDS, compile=True), stream, "cpu", progress=False)
    with pytest.raises(ConfigError, match="Fisher"):
        TrainConfig(compile=True, fisher=0.5).validate()
    with pytest.raises(ConfigError, match="dropout_masks"):
        TrainConfig(dropout_masks="philox").validate()
    monkeypatch.setattr(trainer_mod, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="precision='fp32'"):
        train_copies(tiny_spec(SEEDS, precision="bf16"), stream, "cpu", progress=False)


def test_the_new_fields_leave_every_stored_run_hash_alone():
    from lmc_core.config import config_hash, non_default

    assert "dropout_masks" not in non_default(TrainConfig()) and "compile" not in non_default(TrainConfig())
    assert config_hash(tiny_spec(SEEDS)) != config_hash(tiny_spec(SEEDS, **HASH)) != config_hash(
        tiny_spec(SEEDS, **COMPILED))


@pytest.mark.skipif(not trainer_mod.cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_training_gives_the_barriers_of_fp32_within_the_spread_between_initialisations():
    # a noisy chain (next = 7 x + 3 mod 60 with probability 0.6): learnable, and copies trained from one
    # initialisation at lr 2.5 end up separated by a barrier of a few hundredths of a nat that varies by init
    g = torch.Generator().manual_seed(0)
    follow, noise = torch.rand(30000, generator=g) < 0.6, torch.randint(0, 60, (30000,), generator=g).tolist()
    tokens = [0]
    for i in range(1, 30000):
        tokens.append((tokens[-1] * 7 + 3) % 60 if follow[i] else noise[i])
    stream = torch.tensor(tokens)
    inits = 5
    seeds = [Seeds(i, 10 * i + c, 10 * i + c) for i in range(inits) for c in (1, 2)]
    model = model_preset("ptb-transformer", vocab_size=60, d_model=32, d_ff=32, context=12)
    split = {"test": stream[-2000:]}

    def barriers(precision):
        r = train_copies(tiny_spec(seeds, steps=300, model=model, lr=2.5, precision=precision, **HASH),
                         stream[:-2000], "cpu", progress=False)
        out = []
        for i in range(inits):
            a, b = copy_state(r.state, 2 * i), copy_state(r.state, 2 * i + 1)
            curve = interpolation_curve(model, a, b, split, np.linspace(0, 1, 9), batch_size=64)
            out.append(barrier(curve["alpha"].to_numpy(), curve["loss"].to_numpy()))
        return np.array(out)

    fp32, bf16 = barriers("fp32"), barriers("bf16")
    assert fp32.mean() > 0.01 and fp32.std(ddof=1) > 0.003  # a barrier that differs between initialisations
    assert not np.array_equal(fp32, bf16)  # bf16 did train differently
    assert abs(bf16.mean() - fp32.mean()) <= fp32.std(ddof=1), (fp32, bf16)


def test_the_fused_loss_repeats_itself_keeps_copy_k_a_lone_run_and_trains_the_unfused_weights(stream):
    fused = repeats_and_copies_are_lone_runs(stream, **FUSED)
    plain = train_copies(tiny_spec(SEEDS), stream, "cpu", progress=False)
    close(fused, plain.state, rtol=1e-4, atol=1e-5)  # the same updates; only the rounding differs
    tied = tiny_model(tie_embeddings=True)  # the output layer is the embedding's transposed view
    close(train_copies(tiny_spec(SEEDS, model=tied, **FUSED), stream, "cpu", progress=False).state,
          train_copies(tiny_spec(SEEDS, model=tied), stream, "cpu", progress=False).state, rtol=1e-4, atol=1e-5)


def test_the_fused_loss_is_refused_before_training_where_it_cannot_work(stream):
    from lmc_core.config import config_hash, non_default

    with pytest.raises(ConfigError, match="fused_cross_entropy=False"):
        TrainConfig(fused_cross_entropy=True, fisher=0.5).validate()
    with pytest.raises(ConfigError, match="fused_cross_entropy"):
        TrainConfig(fused_cross_entropy=1).validate()
    with pytest.raises(ValueError, match="fused_cross_entropy=False"):  # a per-copy Fisher weight (a grid)
        spec = dataclasses.replace(tiny_spec(SEEDS, **FUSED), per_copy=tuple(CopySettings(fisher=f) for f in (0, 0.5, 0)))
        train_copies(spec, stream, "cpu", progress=False)
    assert "fused_cross_entropy" not in non_default(TrainConfig())  # stored runs keep their hashes
    assert config_hash(tiny_spec(SEEDS)) != config_hash(tiny_spec(SEEDS, **FUSED))


def test_the_studies_choose_precision_masks_and_compile_before_any_training():
    from lmc_core.studies.instability_init import PROFILES
    from lmc_core.studies.lm_setup import train_config
    from lmc_core.train.trainer import resolve_precision

    native = "bf16" if trainer_mod.cpu_has_bf16() else "fp32"
    assert resolve_precision("auto", "cpu") == native and resolve_precision("fp32", "cpu") == "fp32"
    from lmc_core.studies.instability_spawn import PROFILES as SPAWN

    paper, quick = PROFILES["paper"], PROFILES["quick"]
    tc = train_config(paper, 100)
    assert (tc.precision, tc.dropout_masks, tc.compile) == (resolve_precision("auto"), "hash", False)
    assert tc.fused_cross_entropy and train_config(SPAWN["paper"], 100).fused_cross_entropy  # 10,000 words
    assert not train_config(quick, 100).fused_cross_entropy  # 72 characters: nothing to gain
    # the quick profiles of 01 and 02 (issue 26): compiled, hash masks, bf16 where the CPU has bf16 instructions
    for q in (quick, SPAWN["quick"]):
        tc = train_config(q, 100)
        assert (tc.precision, tc.dropout_masks, tc.compile) == (native, "hash", True)
    with pytest.raises(ConfigError, match="dropout_masks='hash'"):
        quick.replace(dropout_masks="device").validate()  # a compiled step cannot draw per-copy generator masks
    smoke = train_config(PROFILES["smoke"], 100)  # the tests' profile keeps the eager fp32 path
    assert (smoke.precision, smoke.dropout_masks, smoke.compile) == ("fp32", "device", False)


@pytest.mark.skipif(not trainer_mod.cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_bf16_on_a_cpu_repeats_itself_and_copy_k_equals_a_lone_bf16_run(stream):
    bf16 = repeats_and_copies_are_lone_runs(stream, precision="bf16", **HASH)
    fp32 = train_copies(tiny_spec(SEEDS, **HASH), stream, "cpu", progress=False)
    assert not same(fp32.state, bf16), "precision='bf16' trained in fp32"


def test_a_stored_run_says_which_generator_drew_its_masks(stream, tmp_path):
    from lmc_core.runs.store import RunStore

    store = RunStore(tmp_path)
    assert train_copies(tiny_spec(SEEDS), stream, "cpu", progress=False).dropout_masks == "generator"
    for spec, want in ((tiny_spec(SEEDS[:1], **HASH), "hash"), (tiny_spec(SEEDS[:1]), "generator"),
                       (tiny_spec(SEEDS[:1], model=tiny_model(dropout=0.0)), "none")):
        run = store.get(spec, stream, "cpu", progress=False)
        done = (run.path / "DONE.json").read_text()
        assert f'"dropout_masks": "{want}"' in done, done


def test_the_fisher_penalty_samples_its_labels_as_before_the_masks_moved_to_32_bits():
    """Runs stored with a sampled Fisher penalty keep their weights: its uniforms are SplitMix64 per element,
    checked here against a pure-Python SplitMix64 (element i of copy k: the key's hash plus i times the golden
    ratio, hashed, top 24 bits)."""
    m64 = (1 << 64) - 1

    def splitmix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m64
        return z ^ (z >> 31)

    seeds = [rng.mix(5, 9), rng.mix(6, 2)]
    keys = torch.tensor([rng.signed(s) for s in seeds], dtype=torch.int64)
    got = rng.uniform_splitmix(keys, 3, (4, 5))
    for k, s in enumerate(seeds):
        key = splitmix((s + rng.mix(3)) & m64)
        want = [(splitmix((key + (i + 1) * 0x9E3779B97F4A7C15) & m64) >> 40) / (1 << 24) for i in range(20)]
        assert got[k].flatten().tolist() == pytest.approx(want, abs=0), k
