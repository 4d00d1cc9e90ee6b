"""Capped runs (issue 31): a profile at its real sizes with training cut short, marked, and its cost projected."""
import json
from dataclasses import replace

import pytest
import torch

from lmc_core import capped
from lmc_core.config import Seeds, config_hash
from lmc_core.publish import costs
from lmc_core.runs.spawn import parent_checkpoint, spawn_children
from lmc_core.runs.store import RunStore
from lmc_core.train import train_copies

from conftest import tiny_spec


def test_a_capped_run_makes_its_updates_then_jumps_to_the_end_through_its_kept_checkpoints(stream, tmp_path):
    spec = tiny_spec([Seeds(0, 1, 2), Seeds(0, 3, 4)], steps=30, checkpoints=(10, 20))
    two = train_copies(spec, stream, "cpu", until=2, progress=False)  # two real updates, uncapped
    with capped.capping(2) as ledger:
        store = RunStore(tmp_path)
        run = store.get(spec, stream, "cpu", progress=False)
    assert run.steps == [30, 30]
    assert all(torch.equal(run.state[n], two.state[n]) for n in two.state)  # the weights of the real updates
    assert len(ledger) == 1 and ledger[0]["copy_steps"] == 60 and ledger[0]["copy_steps_done"] == 4
    assert ledger[0]["copies"] == 2 and ledger[0]["model"] == "lm" and ledger[0]["flops_per_copy_step"] > 0
    entries = list(ledger)
    with capped.capping(2):
        kept = store.checkpoint(spec, 10)
    assert all(torch.equal(kept[n], run.state[n]) for n in kept)  # kept, with the weights as they were
    assert capped.cap_steps() is None and entries[0]["seconds"] > 0  # uncapped after the block


def test_a_capped_run_never_answers_for_a_real_one(stream, tmp_path):
    spec = tiny_spec(steps=6)
    real = config_hash(spec)
    with capped.capping(2):
        assert config_hash(spec) != real
        RunStore(tmp_path).get(spec, stream, "cpu", progress=False)
    assert RunStore(tmp_path).load(spec) is None  # uncapped, the store does not have this run


def test_spawning_runs_capped_with_every_spawn_point(stream, tmp_path):
    spec = tiny_spec([Seeds(0, 1, 2)], steps=40, momentum=0.9)
    kids = [Seeds(0, 11, 12), Seeds(0, 13, 14)]
    with capped.capping(1) as ledger:
        store = RunStore(tmp_path)
        out = spawn_children(store, spec, [0, 5, 20], kids, stream, "cpu", progress=False)
        assert parent_checkpoint(store, spec, 20).steps == [20]
    assert len(out) == 3
    planned = sum(e["copy_steps"] for e in ledger)
    assert planned == 20 + 2 * (40 + 35 + 20)  # the parent to its last spawn point, every child to T


def test_a_bad_cap_is_refused_naming_it(monkeypatch):
    monkeypatch.setenv(capped.ENV, "three")
    with pytest.raises(ValueError, match="LMC_CAP_STEPS='three' must be a positive integer"):
        capped.cap_steps()


def test_the_projection_scales_each_call_by_its_measured_rate():
    ledger = [{"model": "lm", "params": 1000, "copies": 2, "copy_steps": 100, "copy_steps_done": 4, "seconds": 2.0,
               "tokens_per_copy_step": 10, "flops_per_copy_step": 6e4},
              {"model": "lm", "params": 1000, "copies": 1, "copy_steps": 10, "copy_steps_done": 2, "seconds": 1.0,
               "tokens_per_copy_step": 10, "flops_per_copy_step": 6e4}]
    out = capped.project(ledger, other_seconds=3.0, other_scale=10.0, fixed_seconds=5.0)
    assert out["train_seconds"] == pytest.approx(2.0 / 4 * 100 + 1.0 / 2 * 10)
    assert out["other_seconds"] == pytest.approx(35.0) and out["copy_steps"] == 110
    assert out["flops"] == pytest.approx(6e4 * 110)
    assert out["h100_seconds"] > out["flops"] / capped.H100_BF16_FLOPS  # at the stated utilisation, not the peak
    assert capped.training_flops(10, 2, layers=2, context=4, width=8) == 6 * 2 * (10 + 2 * 4 * 8)


def test_sizes_and_ratios_of_capped_fields():
    assert costs.size(12) == 12 and costs.size([1, 2, 3]) == 3 and costs.size(None) is None
    assert costs.size({"sgd": [0.1, 1.0, 20], "adam": [1e-4, 1e-2, 5]}) == 25
    assert costs.size(True) is None


def test_a_capped_study_run_is_marked_and_kept_apart(tmp_path):
    from lmc_core.studies import instability_spawn as study

    with pytest.raises(Exception, match="figures_dir='f': a capped run"):
        study.run(dict(profile="smoke", figures_dir=str(tmp_path / "f"), overrides={"cap_steps": 2}))
    r = study.run(dict(profile="smoke", figures_dir=str(tmp_path / "f-capped"), store_dir=str(tmp_path / "runs"),
                       progress=False, overrides={"cap_steps": 2, "eval_tokens": 256}))
    assert r.summary.startswith(f"**{costs.BANNER}")
    summary = json.loads((tmp_path / "f-capped" / "02_summary.json").read_text())
    proj = summary["capped"]["projection"]
    assert summary["capped"]["cap_steps"] == 2 and proj["copy_steps"] > 0 and proj["cpu_seconds"] > 0
    assert (tmp_path / "f-capped" / "02_cost.csv").exists() and proj["capped_eval_seconds"] > 0
    assert all(any(costs.BANNER in t.get_text() for t in fig.texts) for fig in r.figures.values())


def test_the_readme_profile_table_gets_the_projected_column():
    readme = ("x\n<!-- profiles -->\n| notebook | `quick` | `paper` |\n|---|---|---|\n| 01 | a | b |\n| 02 | c | d |\n"
              "<!-- /profiles -->\ny\n")
    c = {"cpu_seconds": 7200.0, "h100_seconds": 60.0, "flops": 1e15, "peak_memory_gb": 2.0, "date": "2026-12-06",
         "device": "a CPU", "torch": "2.13.0"}
    out = costs.render_profiles(readme, {"01": c})
    assert "| 01 | a | b | 2.0 h on this CPU (1 thread), 1.0 min on one H100" in out and "cap ?" in out
    assert "| 02 | c | d | not measured yet |" in out and "capped runs: a CPU, torch 2.13.0, 2026-12-06" in out
    assert costs.render_profiles(out, {"01": c}) == out  # a second pass changes nothing


def test_run_notebooks_refuses_a_bad_cap(tmp_path):
    from lmc_core.publish.reports import run_notebooks

    with pytest.raises(ValueError, match="cap_steps=0 must be an integer"):
        run_notebooks("paper", notebooks=["01"], cap_steps=0, figures_dir=tmp_path / "x-capped")
    with pytest.raises(ValueError, match="reports_dir='r': a capped run"):
        run_notebooks("paper", notebooks=["01"], reports_dir=tmp_path / "r", extra_params={"overrides": {"cap_steps": 1}})


def test_copies_that_do_not_fit_at_once_train_in_packs_with_the_same_weights(stream, tmp_path, monkeypatch, capsys):
    from lmc_core.train import memory

    spec = tiny_spec([Seeds(0, 1, 2), Seeds(3, 4, 5), Seeds(6, 7, 8)], steps=6, optimizer="adamw", lr=1e-2)
    whole = RunStore(tmp_path / "a").get(spec, stream, "cpu", progress=False)
    one = memory.bytes_per_copy(spec, torch.device("cpu"))["total"]
    monkeypatch.setenv(memory.ENV, str(1.5 * one / memory.GB))  # one copy at a time
    packed = RunStore(tmp_path / "b").get(spec, stream, "cpu", progress=False)
    assert "training them in 3 packs of up to 1" in capsys.readouterr().out
    assert all(torch.equal(whole.state[n], packed.state[n]) for n in whole.state)
    assert packed.steps == [6, 6, 6] and sorted(packed.history["copy"].unique()) == [0, 1, 2]
    monkeypatch.setenv(memory.ENV, str(0.5 * one / memory.GB))
    assert memory.copies_at_once(spec, torch.device("cpu")) == 1  # a CPU: warned, one copy at a time
    assert "even one copy may not fit" in capsys.readouterr().out
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: None)
    with pytest.raises(Exception, match="even one copy does not fit.*accum"):  # a GPU: refused before training
        memory.copies_at_once(spec, torch.device("cuda"))
    kept = replace(spec, train=replace(spec.train, checkpoints=(3,)))
    monkeypatch.setenv(memory.ENV, str(1.5 * one / memory.GB))
    assert memory.copies_at_once(kept, torch.device("cpu")) == 3  # kept checkpoints: all at once, with a warning
    assert "keeps checkpoints" in capsys.readouterr().out


def test_the_memory_estimate_of_gpt2_small_is_near_what_one_copy_held():
    from lmc_core.config import RunSpec, TrainConfig, model_preset
    from lmc_core.train import memory

    cfg = model_preset("gpt2", vocab_size=50257)
    spec = RunSpec(model=cfg, train=TrainConfig(steps=10, batch_size=8, optimizer="adamw"), seeds=(Seeds(0, 1, 2),))
    need = memory.bytes_per_copy(spec, torch.device("cuda"))
    assert 120e6 < need["parameters"] < 170e6
    assert 6 < need["total"] / memory.GB < 20  # issue 31 measured 11.7 GB for one GPT-2 copy of notebook 07


def test_costs_are_collected_from_capped_summaries_into_the_docs_and_readme(tmp_path):
    c = {"cpu_seconds": 90.0, "h100_seconds": 2.0, "flops": 1e12, "peak_memory_gb": 1.0, "date": "2026-12-06",
         "device": "a CPU", "torch": "2.13.0", "notebook": "01_x", "profile": "paper", "copy_steps": 10,
         "train_seconds": 60.0, "other_seconds": 30.0, "eval_scale": 2.0, "ratios": {}, "eval_fields": {},
         "unknown_sizes": [], "runs": [], "h100_assumption": "one H100"}
    fig = tmp_path / "figures"
    fig.mkdir()
    (fig / "01_summary.json").write_text(json.dumps({"capped": {"cap_steps": 2, "projection": c}}))
    (fig / "02_summary.json").write_text(json.dumps({"headline": "a real result"}))  # not capped: left out
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- profiles -->\n| notebook | a | b |\n|---|---|---|\n| 01 | x | y |\n"
                                        "<!-- /profiles -->\n")
    assert costs.write_costs(tmp_path, fig) == ["01"]
    assert json.loads((tmp_path / "docs" / "paper_costs.json").read_text())["01"]["cpu_seconds"] == 90.0
    assert "## 01_x" in (tmp_path / "docs" / "paper_costs.md").read_text()
    assert "| 01 | x | y | 1.5 min on this CPU" in (tmp_path / "README.md").read_text()
    assert "01: 1.5 min on this CPU" in "\n".join(costs.projection_lines(tmp_path, ["01"]))


def test_a_large_models_path_is_evaluated_in_chunks_of_alphas_with_the_same_numbers(stream, monkeypatch):
    from lmc_core.analysis import interpolate as I
    from lmc_core.ensemble import copy_state

    spec = tiny_spec([Seeds(0, 1, 2), Seeds(3, 4, 5)], steps=4)
    st = train_copies(spec, stream, "cpu", progress=False).state
    a, b = copy_state(st, 0), copy_state(st, 1)
    alphas = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.5]
    whole = I.interpolation_curve(spec.model, a, b, {"train": stream[:400], "test": stream[400:800]}, alphas)
    fam = I.family_of(spec.model)
    monkeypatch.setattr(I, "PATH_STATE_MB", 0)  # chunks of one evaluation group: here all seven alphas
    assert I.alphas_at_once(fam, spec.model, a, len(alphas), 32) == len(alphas)
    monkeypatch.setattr(type(fam), "eval_bytes_per_example", lambda self, cfg: (512 << 20) // 64)  # groups of 2
    assert I.alphas_at_once(fam, spec.model, a, len(alphas), 32) == 2
    chunked = I.interpolation_curve(spec.model, a, b, {"train": stream[:400], "test": stream[400:800]}, alphas)
    assert chunked.equals(whole)


def test_the_ledger_counts_an_mlps_examples_not_its_features(tmp_path):
    from lmc_core.config import RunSpec, TrainConfig
    from lmc_core.data.vectors import VectorDataConfig, load_vectors
    from lmc_core.models.mlp import MLPConfig

    spec = RunSpec(model=MLPConfig(d_in=40, hidden=(16,), n_classes=10), data=VectorDataConfig(),
                   train=TrainConfig(steps=5, batch_size=8), seeds=(Seeds(0, 1, 2),))
    data = load_vectors(VectorDataConfig(), tmp_path)
    with capped.capping(1) as ledger:
        train_copies(spec, data["train"], "cpu", progress=False)
    assert ledger[0]["tokens_per_copy_step"] == 8
