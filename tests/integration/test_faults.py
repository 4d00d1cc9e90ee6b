"""Fault injection: nothing computed is lost or overwritten, damaged files are quarantined (never used,
never destroyed), unreadable files are named, two processes never train one run, bad input stops early."""
import json
import multiprocessing as mp
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from lmc_core.config import ConfigError, Seeds
from lmc_core.data import DataUnavailableError
from lmc_core.files import StoreAccessError, load_tensors, quarantine, save_tensors
from lmc_core.runs.lock import RunLockedError, run_lock
from lmc_core.publish.outputs import Outputs
from lmc_core.runs.store import RunStore
from lmc_core.runs.layout import child_key
from lmc_core.runs.spawn import parent_dir, spawn_children
from lmc_core.studies import instability_init as study
from lmc_core.train import train_copies

from conftest import tiny_spec

KIDS = [Seeds(0, 11, 12), Seeds(0, 13, 14)]


def parent_spec():
    return tiny_spec([Seeds(0, 1, 2)], steps=16, momentum=0.9)


def same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


# ----------------------------------------------------------------------------- figures written as a set
def figure(value):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, value])
    return fig


def test_a_failure_while_saving_leaves_the_previous_figure_set_untouched(tmp_path):
    good = Outputs()
    good.figure("01_a", figure(1), pd.DataFrame({"x": [1]}))
    good.figure("01_b", figure(2), pd.DataFrame({"x": [2]}))
    written = good.commit(tmp_path)
    before = {p.name: p.read_bytes() for p in written}

    class Boom(Exception):
        pass

    bad = Outputs()
    bad.figure("01_a", figure(5), pd.DataFrame({"x": [5]}))
    bad.figure("01_b", figure(6), pd.DataFrame({"x": [6]}))
    real = bad._items[4][1]  # the second figure's PDF

    def fail(path):  # a full disk or Ctrl-C halfway through writing the set
        Path(path).write_bytes(b"%PDF-partial")
        raise Boom()

    bad._items[4] = (bad._items[4][0], fail)
    with pytest.raises(Boom):
        bad.commit(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing mixed, nothing truncated
    assert real is not None


def test_a_study_that_fails_between_figures_writes_none(tmp_path, monkeypatch):
    params = {"profile": "smoke", "inits": 1, "variant": None, "figures_dir": str(tmp_path / "f"),
              "store_dir": str(tmp_path / "s"), "progress": False}
    study.run(params)
    before = {p.name: p.read_bytes() for p in (tmp_path / "f").iterdir()}

    def boom(*a, **k):
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(study.figs, "instability_figure", boom)
    with pytest.raises(RuntimeError, match="plotting failed"):
        study.run({**params, "alphas": 3})
    assert {p.name: p.read_bytes() for p in (tmp_path / "f").iterdir()} == before


# ----------------------------------------------------------------------------- loss log
def test_resumed_run_keeps_the_loss_log_of_the_part_before_the_kill(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = tiny_spec([Seeds(0, 1, 2), Seeds(0, 3, 4)], steps=12, save_every=4)
    store.get(spec, stream, "cpu", progress=False, stop_after=6)  # killed after step 6 (resume point at 4)
    done = store.get(spec, stream, "cpu", progress=False)
    whole = train_copies(spec, stream, "cpu", progress=False)
    assert sorted(done.history.step.unique()) == list(range(1, 13))
    pd.testing.assert_frame_equal(done.history.reset_index(drop=True), whole.history.reset_index(drop=True))
    on_disk = pd.read_csv(store.path(spec) / "history.csv")
    assert len(on_disk) == 24


def test_damaged_history_is_moved_aside_and_rebuilt_never_fatal(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = tiny_spec(steps=6)
    first = store.get(spec, stream, "cpu", progress=False)
    hist = store.path(spec) / "history.csv"
    hist.write_bytes(b"\x00\xffgarbage,,,\n1,2\n")
    again = store.get(spec, stream, "cpu", progress=False)
    assert not again.trained_now
    pd.testing.assert_frame_equal(again.history, first.history, check_dtype=False)
    assert (store.path(spec) / "history.csv.corrupt").read_bytes().startswith(b"\x00\xffgarbage")
    assert len(pd.read_csv(hist)) == len(first.history)


# ----------------------------------------------------------------------------- permissions vs corruption
def test_unreadable_file_is_an_error_naming_it_not_corruption(stream, tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    spec = tiny_spec(steps=4)
    store.get(spec, stream, "cpu", progress=False)
    final = store.path(spec) / "final.safetensors"

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("lmc_core.files.sha256", denied)
    with pytest.raises(StoreAccessError, match="final.safetensors"):
        store.get(spec, stream, "cpu", progress=False)
    assert final.exists() and not list(final.parent.glob("*.corrupt*"))  # a valid run is never moved aside


def test_files_follow_the_umask(tmp_path):
    import lmc_core.files as io

    save_tensors(tmp_path / "t.safetensors", {"a": torch.zeros(2)})
    mode = (tmp_path / "t.safetensors").stat().st_mode & 0o777
    assert mode == io.FILE_MODE and mode & 0o044, oct(mode)  # not mkstemp's 0600


# ----------------------------------------------------------------------------- quarantine
def test_every_quarantined_file_is_kept(tmp_path):
    p = tmp_path / "final.safetensors"
    for i in range(3):
        save_tensors(p, {"a": torch.full((2,), float(i))})
        quarantine(p)
    kept = sorted(x.name for x in tmp_path.iterdir() if not x.name.endswith(".sha256"))
    assert kept == ["final.safetensors.corrupt", "final.safetensors.corrupt-2", "final.safetensors.corrupt-3"]
    assert [load_tensors(tmp_path / n)[0]["a"][0].item() for n in kept] == [0.0, 1.0, 2.0]


def test_second_corruption_keeps_the_first_quarantined_file(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = tiny_spec(steps=4)
    final = store.path(spec) / "final.safetensors"
    store.get(spec, stream, "cpu", progress=False)
    for i in range(2):
        final.write_bytes(final.read_bytes()[:50] + bytes([i]))
        assert store.get(spec, stream, "cpu", progress=False).trained_now
    assert (final.parent / "final.safetensors.corrupt").exists()
    assert (final.parent / "final.safetensors.corrupt-2").exists()


def test_corrupt_spawn_child_is_moved_aside_and_retrained(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = parent_spec()
    first = spawn_children(store, spec, [0, 8], KIDS, stream, "cpu", progress=False)
    f = store.root / child_key(spec, 8, tuple(KIDS)) / "final.safetensors"
    f.write_bytes(f.read_bytes()[:64])
    again = spawn_children(store, spec, [0, 8], KIDS, stream, "cpu", progress=False)
    assert same(first[8], again[8])
    assert (f.parent / "final.safetensors.corrupt").exists()


# ----------------------------------------------------------------------------- spawn checkpoints and locks
def test_adding_a_spawn_point_keeps_every_spawn_checkpoint(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = parent_spec()
    spawn_children(store, spec, [0, 12], KIDS, stream, "cpu", progress=False)
    ckpt = parent_dir(store, spec) / "ckpt"
    stamps = {p.name: p.stat().st_mtime_ns for p in ckpt.glob("step-*.safetensors")}
    assert set(stamps) == {"step-0000000.safetensors", "step-0000012.safetensors"}
    spawn_children(store, spec, [0, 4, 12], KIDS, stream, "cpu", progress=False)
    now = {p.name: p.stat().st_mtime_ns for p in ckpt.glob("step-*.safetensors")}
    assert {n: now[n] for n in stamps} == stamps  # kept, not rewritten
    assert "step-0000004.safetensors" in now


def test_a_held_lock_makes_a_second_process_wait(tmp_path, monkeypatch):
    d = tmp_path / "run"
    d.mkdir()
    (d / "LOCK").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "since": "now"}))
    with pytest.raises(RunLockedError, match="LOCK"):
        with run_lock(d, timeout=0.3, poll=0.05):
            pass


def test_a_stale_lock_is_taken_over(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    dead = mp.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    (d / "LOCK").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "then"}))
    with run_lock(d, timeout=2, poll=0.05) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (d / "LOCK").exists()


def _get(root, stream_list, q):
    import torch as t

    from conftest import tiny_spec as ts
    from lmc_core.runs.store import RunStore as RS

    run = RS(root).get(ts([Seeds(0, 1, 2)], steps=30), t.tensor(stream_list), "cpu", progress=False)
    q.put(run.trained_now)


def test_two_processes_never_train_the_same_run(stream, tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_get, args=(str(tmp_path), stream.tolist(), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(q.get(timeout=5) for _ in procs) == [False, True]  # one trained, the other loaded it


# ----------------------------------------------------------------------------- input checks before training
def run_study(tmp_path, **kw):
    return study.run({"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(tmp_path / "s"),
                      "progress": False, **kw})


@pytest.mark.parametrize("kw, match", [
    ({"alphas": 1}, "alphas"), ({"alphas": 10**9}, "alphas"), ({"alphas": 2.5}, "alphas"),
    ({"eval_tokens": 0}, "eval_tokens"), ({"eval_tokens": -5}, "eval_tokens"),
    ({"model_overrides": {"d_modle": 64}}, "unknown key.*d_modle.*d_model"),
    ({"model_overrides": {"vocab_size": 50}}, "vocab_size"),
    ({"model_overrides": {"d_model": "64"}}, "d_model"),
    ({"model_overrides": [("d_model", 64)]}, "dict"),
    ({"lr": -1.0}, "lr"),
    ({"data_path": "data/ptb"}, "data_path"),
])
def test_bad_parameters_stop_before_any_work(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        run_study(tmp_path, **kw)
    assert not (tmp_path / "s").exists()


def test_figures_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        run_study(tmp_path)
    assert not (tmp_path / "s").exists()


def test_token_ids_beyond_the_vocabulary(stream):
    with pytest.raises(ConfigError, match="vocab_size is 60"):
        train_copies(tiny_spec(steps=2), torch.cat([stream, torch.tensor([60])]), "cpu", progress=False)


@pytest.mark.parametrize("content, match", [(b"", "is empty"), (b"\x00\x01\x02binary", "is not a text file"),
                                            (b"caf\xe9 au lait\n", "is not UTF-8")])
def test_bad_ptb_files_are_named_as_the_user_wrote_them(tmp_path, monkeypatch, content, match):
    monkeypatch.chdir(tmp_path)
    folder = Path("my_ptb")
    folder.mkdir()
    for s in ("train", "valid", "test"):
        (folder / f"ptb.{s}.txt").write_text("the cat sat\n")
    (folder / "ptb.valid.txt").write_bytes(content)
    with pytest.raises(DataUnavailableError, match=rf"my_ptb/ptb\.valid\.txt {match}"):
        run_study(tmp_path, corpus="ptb", data_path="my_ptb", level="word")


def test_missing_ptb_folder_is_named_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataUnavailableError, match=r"PTB folder nowhere/ptb \(= .*\) does not exist"):
        run_study(tmp_path, corpus="ptb", data_path="nowhere/ptb")
