"""Review fixes: every figure reader of the package reads under the folder's shared lock; the run store remembers
how a run was trained without keeping its data alive; the statistics' argument errors are ConfigErrors that name
the argument."""
import gc
import json
import threading
import time
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lmc_core.config import ConfigError, Seeds, config_hash
from lmc_core.files import CorruptFileError
from lmc_core.publish import outputs
from lmc_core.runs.layout import checkpoint_path, ckpt_dir
from lmc_core.runs.store import RunStore

from conftest import tiny_spec


# --------------------------------------------------------------------------- readers of figure sets
def _summary_set(tag: int):
    o = outputs.Outputs()
    o.text("04_a.csv", f"a of run {tag}\n")
    o.json("04_summary.json", {"headline": f"run {tag}"})
    return o


def _killed_after_the_journal(folder: Path, tag: int) -> None:
    """What a writer killed right after its journal (the commit point) leaves: staged files and the journal."""
    stage = folder / ".staging-killed"
    stage.mkdir()
    (stage / "04_a.csv").write_text(f"a of run {tag}\n")
    (stage / "04_summary.json").write_text(json.dumps({"headline": f"run {tag}"}))
    (folder / ".swap-04.json").write_text(json.dumps({"stage": stage.name, "files": ["04_a.csv", "04_summary.json"],
                                                      "remove": []}))


def test_read_summary_finishes_a_journalled_swap_first(tmp_path):
    from lmc_core.publish.report_html import read_summary

    _summary_set(1).commit(tmp_path, "04")
    _killed_after_the_journal(tmp_path, 2)
    assert read_summary(tmp_path, "04") == {"headline": "run 2"}  # the committed set, not the old one
    assert not list(tmp_path.glob(".*"))


def test_write_index_reads_the_figures_under_the_shared_lock(tmp_path, monkeypatch):
    from lmc_core.publish import report_index

    if outputs.fcntl is None:
        pytest.skip("no flock on this platform")
    figures = tmp_path / "figures"
    o = _summary_set(1)
    o.text("04_fig.png", "png of run 1\n")
    o.commit(figures, "04")
    writer = threading.Thread(target=_summary_set(2).commit, args=(figures, "04"))
    during = {}
    real = report_index._figure_html

    def figure_html(fig, title, reports_dir):  # called while the index reads the figure folder
        if not during:
            writer.start()
            time.sleep(0.5)
            during["writer waits"] = writer.is_alive()
            during["summary"] = (figures / "04_summary.json").read_text()
        return real(fig, title, reports_dir)

    monkeypatch.setattr(report_index, "_figure_html", figure_html)
    page = report_index.write_index("quick", root=tmp_path, reports_dir=tmp_path / "reports", figures_dir=figures)
    writer.join(30)
    assert during == {"writer waits": True, "summary": json.dumps({"headline": "run 1"}, indent=2, sort_keys=True)}
    assert "run 1" in page.read_text() and not writer.is_alive()
    assert json.loads((figures / "04_summary.json").read_text()) == {"headline": "run 2"}  # swapped in afterwards


def test_reading_blocks_nest_and_a_write_inside_one_is_refused(tmp_path):
    from lmc_core.publish.report_html import read_summary

    _summary_set(1).commit(tmp_path, "04")
    result = {}

    def nested():
        with outputs.reading(tmp_path):
            result["inner"] = read_summary(tmp_path, "04")  # would wait for itself with a second lock
            with pytest.raises(RuntimeError, match="reading"):
                _summary_set(2).commit(tmp_path, "04")
            result["done"] = True

    t = threading.Thread(target=nested, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive() and result == {"inner": {"headline": "run 1"}, "done": True}
    _summary_set(2).commit(tmp_path, "04")  # after the block: no lock left behind
    assert read_summary(tmp_path, "04") == {"headline": "run 2"}


# --------------------------------------------------------------------------- the run store's memory
@pytest.fixture()
def kept_spec():
    return tiny_spec([Seeds(0, 1, 2)], steps=8, checkpoints=(4,), save_every=2, optimizer="adamw", lr=1e-2,
                     store_optimizer=False)


def test_the_store_does_not_keep_a_runs_data_alive(stream, kept_spec, tmp_path):
    store = RunStore(tmp_path)
    data = stream.clone()
    init = {n: t.clone() for n, t in store.get(kept_spec, data, "cpu", progress=False).state.items()}
    refs = [weakref.ref(data)]
    spec2 = replace(kept_spec, init_from=f"{config_hash(kept_spec)}@8")  # a fine-tune of the first run
    store.get(spec2, data, "cpu", progress=False, init_state=init, monitor=None)
    refs += [weakref.ref(t) for t in init.values()]
    del data, init
    gc.collect()
    assert all(r() is None for r in refs), "the run store keeps a run's training data or init state alive"
    d = ckpt_dir(store.path(spec2))
    checkpoint_path(d, 4).write_bytes(b"damaged")
    with pytest.raises(CorruptFileError, match="training data .and init_state"):  # forgotten: says how to rebuild
        store.checkpoint(spec2, 4)
    assert checkpoint_path(d, 4).with_name(checkpoint_path(d, 4).name + ".corrupt").exists()


def test_the_store_rebuilds_a_kept_checkpoint_while_the_caller_holds_the_data(stream, kept_spec, tmp_path):
    store = RunStore(tmp_path)
    base = stream.clone()
    store.get(kept_spec, base[: len(base) - 7], "cpu", progress=False)  # a view made for the call, then dropped
    gc.collect()
    want = store.checkpoint(kept_spec, 4)
    path = checkpoint_path(ckpt_dir(store.path(kept_spec)), 4)
    path.unlink()
    path.write_bytes(b"damaged")
    again = store.checkpoint(kept_spec, 4)  # trained again from the remembered (weakly held) data
    assert want.keys() == again.keys() and all(torch.equal(want[n], again[n]) for n in want)
    assert path.with_name(path.name + ".corrupt").exists()


def test_the_store_remembers_only_runs_with_kept_checkpoints(stream, tmp_path):
    store = RunStore(tmp_path)
    store.get(tiny_spec(steps=4), stream, "cpu", progress=False)
    assert store._rebuild == {}


def test_weak_forms_of_the_argument_kinds():
    from lmc_core.data.batches import Examples
    from lmc_core.runs.store import _Gone, _NotWeak, _strong, _weak

    x, y = torch.arange(10.0), torch.arange(10)
    form = _weak({"train": Examples(x=x, y=y), "pair": (x, "cpu", 3), "view": x.unfold(0, 3, 1)})
    back = _strong(form)
    assert back["train"]["x"] is x and back["train"]["y"] is y
    assert back["pair"][0] is x and back["pair"][1:] == ("cpu", 3)
    assert torch.equal(back["view"], x.unfold(0, 3, 1))
    with pytest.raises(_NotWeak):
        _weak(list(range(5000)))  # large and not weakly referenceable: not remembered
    del x, back
    gc.collect()
    with pytest.raises(_Gone):
        _strong(form)


# --------------------------------------------------------------------------- statistics' argument errors
@pytest.mark.parametrize("bounds", [(1, 0), (0,), "ab", (0, float("nan"))])
def test_threshold_bounds_out_of_domain_is_a_config_error_naming_bounds(bounds):
    from lmc_core.analysis import findings as F
    from lmc_core.analysis.criteria import FRANKLE

    with pytest.raises(ConfigError, match="bounds"):
        F.threshold([1.0, 2.0], criterion=FRANKLE, question="q", metric="m", bounds=bounds)


def test_stats_argument_errors_are_config_errors_naming_the_argument():
    from lmc_core.analysis import stats as S

    with pytest.raises(ConfigError, match="units"):
        S.unit_means([1.0, 2.0, 3.0], units=[0, 1])
    with pytest.raises(ConfigError, match="model_a .* model_b"):
        S.units_of_pairs([0, 1], [1])
    with pytest.raises(ConfigError, match="values .* model_a .* model_b"):
        S.shared_pairs_interval([1.0, 2.0, 3.0], [0, 0, 1], [1, 2])
    assert np.isnan(S.shared_pairs_interval([1.0], [0], [1])[0])  # one length: no error
