"""Hardening IV: recovery paths that finish. A damaged stored artifact is moved aside and made again bit for bit
(notebook 02's parent checkpoints, notebook 06's stored runs and kept checkpoints, any run's kept checkpoint); a
figure set interrupted at any rename is read whole, old or new, and cleaned by the next run; a folder option that
points at a file stops with a message naming the option."""
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from lmc_core.config import ConfigError, Seeds
from lmc_core.ensemble import stack_states
from lmc_core.files import CorruptFileError, load_tensors
from lmc_core.runs.layout import checkpoint_path, ckpt_dir
from lmc_core.runs.spawn import parent_checkpoint, parent_dir, spawn_children
from lmc_core.runs.store import RunStore

from conftest import tiny_spec


def _rewrite(path: Path, data: bytes) -> None:
    path.unlink()  # a new file: tensors loaded earlier are memory-mapped from the old one
    path.write_bytes(data)


def truncate(path: Path, keep: int = 300) -> None:
    _rewrite(path, path.read_bytes()[:keep])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    _rewrite(path, bytes(data))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) or (a[n].is_floating_point() and torch.equal(
        a[n].nan_to_num(0.123), b[n].nan_to_num(0.123))) for n in a)


def results(folder: Path, skip=()) -> dict[str, bytes]:
    """The CSVs and summaries of a figure folder (the numbers), without the columns/files in `skip`."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.suffix in (".csv", ".md", ".json") and p.name not in skip}


def test_a_truncated_kept_fine_tuning_checkpoint_of_notebook_03_is_rebuilt_and_gives_the_same_numbers(tmp_path):
    """Notebook 03 reads the fine-tune's checkpoint at half its steps: damaged, it is made again from the same start
    (the pretrained weights) and data, in the same run of the notebook."""
    from lmc_core.studies import finetuning as study

    params = {"profile": "smoke", "store_dir": str(tmp_path / "s"), "progress": False, "run_encoder": False}
    study.run({**params, "figures_dir": str(tmp_path / "f1")})
    p = study.STUDY.params(params)
    kept = [c for c in (tmp_path / "s").glob("*/ckpt") if checkpoint_path(c, p.finetune_steps // 2).exists()]
    bad = [checkpoint_path(c, p.finetune_steps // 2) for c in kept]
    before = {b: load_tensors(b)[0] for b in bad}
    for b in bad:
        truncate(b)
    study.run({**params, "figures_dir": str(tmp_path / "f2")})
    rebuilt = [b for b in bad if b.with_name(b.name + ".corrupt").exists()]
    assert rebuilt  # the checkpoints the study reads (at half the fine-tuning and the pretraining) were made again
    for b in rebuilt:
        assert same_tensors(load_tensors(b)[0], before[b])
    assert results(tmp_path / "f2") == results(tmp_path / "f1")


# --------------------------------------------------------------------------- 1. notebook 02's parent checkpoints
def test_truncated_spawn_checkpoint_of_notebook_02_is_rebuilt_and_gives_the_same_numbers(tmp_path):
    from lmc_core.studies import instability_spawn as study

    params = {"profile": "smoke", "store_dir": str(tmp_path / "s"), "progress": False}
    study.run({**params, "figures_dir": str(tmp_path / "f1")})  # the intact numbers (the same when loaded)
    p = study.STUDY.params(params)
    ks = study.spawn_steps(list(p.spawn), 40)
    parents = sorted((tmp_path / "s").glob("parent-*"))
    ckpt = parents[0] / "ckpt"
    bad = checkpoint_path(ckpt, max(ks))
    original = load_tensors(bad)[0]
    truncate(bad)
    for r in ckpt.glob("resume-*"):  # rebuilt from the parent's earlier spawn checkpoint, not a resume point
        r.unlink()
    study.run({**params, "figures_dir": str(tmp_path / "f2")})
    assert (ckpt / f"{bad.name}.corrupt").exists()  # moved aside, never destroyed
    assert same_tensors(load_tensors(bad)[0], original)  # made again bit for bit
    assert results(tmp_path / "f2") == results(tmp_path / "f1")


def test_parent_checkpoint_without_tokens_moves_a_damaged_one_aside_and_says_how_to_rebuild(stream, tmp_path):
    store = RunStore(tmp_path)
    spec = tiny_spec([Seeds(0, 1, 2)], steps=16, momentum=0.9)
    kids = [Seeds(0, 11, 12), Seeds(0, 13, 14)]
    spawn_children(store, spec, [0, 8], kids, stream, "cpu", progress=False)
    path = checkpoint_path(ckpt_dir(parent_dir(store, spec)), 8)
    good = parent_checkpoint(store, spec, 8)
    truncate(path)
    with pytest.raises(CorruptFileError, match="tokens"):
        parent_checkpoint(store, spec, 8)
    with pytest.raises(ConfigError, match="k=16 is out of range"):
        parent_checkpoint(store, spec, 16)
    assert path.with_name(path.name + ".corrupt").exists()
    again = parent_checkpoint(store, spec, 8, stream, "cpu", progress=False)
    assert same_tensors(again.state, good.state) and same_tensors(again.opt_state, good.opt_state)


# --------------------------------------------------------------------------- 2. notebook 06 and kept checkpoints
GROK_NOISY = {"06_pair_barriers.csv"}  # its invertible-map condition number varies in the last digits run to run


@pytest.fixture(scope="module")
def grok_store(tmp_path_factory):
    """Notebook 06's smoke profile on a store: (folder, its parameters, the intact numbers; a run trained now gives
    the numbers of a run that loads everything)."""
    from lmc_core.studies import grokking as study

    root = tmp_path_factory.mktemp("grok")
    params = {"profile": "smoke", "store_dir": str(root / "s"), "progress": False}
    study.run({**params, "figures_dir": str(root / "f1")})
    return root, params, results(root / "f1", GROK_NOISY)


def _grok_copy(grok_store, tmp_path):
    import shutil

    root, params, want = grok_store
    shutil.copytree(root / "s", tmp_path / "s")
    return {**params, "store_dir": str(tmp_path / "s")}, want


def test_a_grokking_run_with_one_flipped_byte_is_retrained_bit_identically(grok_store, tmp_path):
    from lmc_core.studies import grokking as study

    params, want = _grok_copy(grok_store, tmp_path)
    runs = sorted(p for p in (tmp_path / "s").iterdir() if (p / "DONE.json").exists())
    assert len(runs) == 2  # the penalised and the plain ensemble
    for run in runs:  # each ensemble in turn: the damaged one retrained, the other loaded, stacked together
        final = run / "final.safetensors"
        before = load_tensors(final)[0]
        flip_byte(final)
        study.run({**params, "figures_dir": str(tmp_path / f"f-{run.name}")})
        assert (run / "final.safetensors.corrupt").exists()
        assert same_tensors(load_tensors(final)[0], before)
        assert results(tmp_path / f"f-{run.name}", GROK_NOISY) == want


def test_a_truncated_kept_grokking_checkpoint_is_moved_aside_and_recomputed(grok_store, tmp_path):
    from lmc_core.studies import grokking as study

    params, want = _grok_copy(grok_store, tmp_path)
    kept = sorted((tmp_path / "s").glob("*/ckpt/step-*.safetensors"))
    before = {p: load_tensors(p)[0] for p in kept}
    for p in kept:
        truncate(p, 500)
    study.run({**params, "figures_dir": str(tmp_path / "f")})
    rebuilt = [p for p in kept if p.with_name(p.name + ".corrupt").exists()]
    assert rebuilt  # the checkpoints the trajectory reads were set aside and made again
    for p in rebuilt:
        assert same_tensors(load_tensors(p)[0], before[p])
    assert results(tmp_path / "f", GROK_NOISY) == want  # 06_trajectory.csv reads them


def test_any_runs_kept_checkpoint_is_rebuilt_from_what_get_was_given(stream, tmp_path):
    spec = tiny_spec([Seeds(0, 1, 2), Seeds(1, 3, 4)], steps=12, checkpoints=(4, 8), save_every=3,
                     optimizer="adamw", lr=1e-2, store_optimizer=False)
    store = RunStore(tmp_path)
    store.get(spec, stream, "cpu", progress=False)
    want = {s: store.checkpoint(spec, s) for s in (4, 8)}
    d = ckpt_dir(store.path(spec))
    truncate(checkpoint_path(d, 8))
    flip_byte(checkpoint_path(d, 4))
    fresh = RunStore(tmp_path)  # knows no training data: moved aside, and the error says how to rebuild
    with pytest.raises(CorruptFileError, match="training data"):
        fresh.checkpoint(spec, 8)
    assert checkpoint_path(d, 8).with_name("step-0000008.safetensors.corrupt").exists()
    fresh.get(spec, stream, "cpu", progress=False)  # loaded (not trained), but remembered
    assert same_tensors(fresh.checkpoint(spec, 8), want[8])
    assert same_tensors(fresh.checkpoint(spec, 4), want[4])  # rebuilt in the same pass
    assert not list(d.glob("resume-*"))  # the partial run's resume points are gone
    with pytest.raises(ConfigError, match="step=5 is not a kept checkpoint"):
        fresh.checkpoint(spec, 5)
    with pytest.raises(ConfigError, match="step=-1 is out of range"):
        fresh.checkpoint(spec, -1)


def test_a_run_trained_now_has_the_key_order_of_a_loaded_one(stream, tmp_path):
    spec = tiny_spec(steps=4)
    trained = RunStore(tmp_path).get(spec, stream, "cpu", progress=False)
    loaded = RunStore(tmp_path).get(spec, stream, "cpu", progress=False)
    assert trained.trained_now and not loaded.trained_now
    assert list(trained.state) == list(loaded.state)
    stacked = stack_states([loaded.state, dict(reversed(list(trained.state.items())))])  # order is no architecture
    assert list(stacked) == list(loaded.state)
    with pytest.raises(ValueError, match="only in the first"):
        stack_states([loaded.state, {n: v for n, v in list(loaded.state.items())[1:]}])


# --------------------------------------------------------------------------- 3. the figure-set swap
def _figure_set(tag: int, names=("04_a", "04_b", "04_c")):
    """A figure set as Outputs.figure queues it (PNG, PDF, CSV per figure) plus the summary; the content is a
    stand-in (the swap does not look at it), so that many interruptions stay fast."""
    from lmc_core.publish.outputs import Outputs

    out = Outputs()
    for name in names:
        for ext in ("png", "pdf", "csv"):
            out.text(f"{name}.{ext}", f"{name}.{ext} of run {tag}\n")
    out.text("04_summary.md", f"run {tag}\n")
    return out


def _visible(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and not p.name.startswith(".")}


@pytest.fixture()
def two_sets(tmp_path):
    """A folder holding set 1 (plus a stale file of the same notebook and another notebook's file) and the files
    that set 2 gives when swapped in without interruption."""
    want = tmp_path / "want"
    _figure_set(2).commit(want, "04")
    (want / "05_other.csv").write_text("another notebook's file\n")
    out = tmp_path / "out"
    _figure_set(1).commit(out, "04")
    (out / "04_old_extra.csv").write_text("from an older version of the study\n")
    (out / "05_other.csv").write_text("another notebook's file\n")
    return out, _visible(out), _visible(want)


def _interrupt_at(monkeypatch, cut: int, once: bool):
    """os.replace raises KeyboardInterrupt at call `cut` (call 0 puts the journal in place, calls 1.. rename the
    staged files); `once`: only that call (a Ctrl-C), else that call and every later one (the process is gone)."""
    real, calls = os.replace, {"n": 0}

    def replace(src, dst):
        n = calls["n"]
        calls["n"] += 1
        if n == cut or (not once and n > cut):
            raise KeyboardInterrupt()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return real


class _Interrupter:
    """KeyboardInterrupt at the `cut`-th system call of a figure-set commit (counted from 0 while armed), just
    before the call runs or just after it returned (`after`: e.g. right after the journal's rename, before the
    next line); `once`: only that call (a Ctrl-C), else that call and every later one (the process is gone).
    The calls: every file-system call of os the swap makes (directly or through pathlib, tempfile, shutil,
    atomic_write), open (the staged files and the journal), flock. Not os.close: a dead process's descriptors
    (and their locks) are closed by the system."""

    OS_CALLS = ("replace", "rename", "unlink", "remove", "rmdir", "mkdir", "open", "fsync", "chmod", "stat",
                "lstat", "scandir")

    def __init__(self, monkeypatch):
        import builtins
        import io

        from lmc_core.publish import outputs

        self.cut, self.after, self.once, self.armed, self.calls, self.hit = -1, False, True, False, 0, False
        targets = [(os, n) for n in self.OS_CALLS] + [(os.path, "exists"), (io, "open"), (builtins, "open")]
        if outputs.fcntl is not None:
            targets.append((outputs.fcntl, "flock"))
        for module, name in targets:
            monkeypatch.setattr(module, name, self._wrap(getattr(module, name)))

    def _wrap(self, real):
        def call(*args, **kw):
            if not self.armed:
                return real(*args, **kw)
            n = self.calls
            self.calls += 1
            fire = self.cut >= 0 and (n == self.cut or (not self.once and n > self.cut))
            if fire and not self.after:
                self.hit = True
                raise KeyboardInterrupt()
            out = real(*args, **kw)
            if fire:
                self.hit = True
                raise KeyboardInterrupt()
            return out

        return call

    def commit(self, figure_set, out, cut: int, after: bool, once: bool) -> bool:
        """figure_set.commit(out, "04") interrupted at call `cut` (-1: never, counting the calls); False if the
        commit finished (no such call, or, `after`, the call raised an error that the swap handles)."""
        self.cut, self.after, self.once, self.calls, self.hit = cut, after, once, 0, False
        self.armed = True
        try:
            figure_set.commit(out, "04")
        except KeyboardInterrupt:
            assert self.hit, "a KeyboardInterrupt that the test did not raise"
            return True
        finally:
            self.armed = False
        return False


@pytest.mark.parametrize("once", [True, False], ids=["ctrl-c", "killed"])
def test_a_swap_interrupted_at_any_system_call_is_read_whole_and_cleaned_by_the_next_run(two_sets, monkeypatch,
                                                                                        once):
    """The review case among them: a Ctrl-C right after atomic_write renamed the journal into place (os.replace,
    then os.path.exists of the temporary file) left a journal whose staged files were deleted."""
    from lmc_core.publish.outputs import read_set

    out, old, new = two_sets
    second = _figure_set(2)
    stop = _Interrupter(monkeypatch)

    def back_to_the_first_set():
        for p in list(out.iterdir()):
            p.unlink()
        for name, data in old.items():
            (out / name).write_bytes(data)

    assert not stop.commit(second, out, -1, False, once) and _visible(out) == new
    calls = stop.calls  # of the whole commit
    assert calls > 50, f"only {calls} system calls counted"  # the interrupter sees the whole commit
    back_to_the_first_set()
    seen = {"old": 0, "new": 0}
    for after in (False, True):
        for cut in range(calls):
            where = f"interrupted {'after' if after else 'before'} system call {cut}"
            if not stop.commit(second, out, cut, after, once):  # the call raised an error the swap handles
                assert after and _visible(out) == new and not list(out.glob(".*")), where
                back_to_the_first_set()
                continue
            journalled = bool(list(out.glob(".swap-*.json")))
            if once:  # a Ctrl-C: the writer settled it before stopping, on disk: old or new, nothing half done
                assert not journalled and _visible(out) in (old, new), where
            view = read_set(out)  # what a reader of the package sees: whole, old or new
            assert view in (old, new), where
            if journalled:  # committed: the staged files the journal names were kept, and the reader finished it
                assert view == new, where
            seen["old" if view == old else "new"] += 1
            assert read_set(out, "05") == {"05_other.csv": b"another notebook's file\n"}, where
            _figure_set(3).commit(out, "04")  # the next run
            assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [], f"leftovers; {where}"
            back_to_the_first_set()
    assert seen["old"] and seen["new"]


def test_ctrl_c_right_after_the_journal_is_written_gives_the_new_set(two_sets, monkeypatch):
    """The reviewer's reproducer: KeyboardInterrupt from atomic_write's os.path.exists of the journal's temporary
    file, i.e. after its rename into place and before the writer's next line."""
    from lmc_core.publish.outputs import read_set

    out, old, new = two_sets
    real = os.path.exists

    def exists(p):
        if ".swap-" in str(p) and str(p).endswith(".tmp"):
            raise KeyboardInterrupt()
        return real(p)

    monkeypatch.setattr(os.path, "exists", exists)
    with pytest.raises(KeyboardInterrupt):
        _figure_set(2).commit(out, "04")
    monkeypatch.setattr(os.path, "exists", real)
    assert _visible(out) == new and not list(out.glob(".*"))  # finished by the writer, "04_old_extra" removed
    assert read_set(out) == new


def test_the_review_case_ctrl_c_after_the_fourth_rename_leaves_no_mixed_set(tmp_path, monkeypatch):
    names = tuple(f"04_fig{i}" for i in range(7))  # 7 figures x 3 files + the summary: 22 files
    out = tmp_path / "figures"
    _figure_set(1, names).commit(out, "04")
    old = _visible(out)
    real = _interrupt_at(monkeypatch, 5, once=False)  # the journal, 4 renames, then the process is gone
    with pytest.raises(KeyboardInterrupt):
        _figure_set(2, names).commit(out, "04")
    monkeypatch.setattr(os, "replace", real)
    mixed = _visible(out)
    assert sum(mixed[n] != old[n] for n in old) == 4  # on disk, for a moment, as the review saw it
    from lmc_core.publish.outputs import read_set

    view = read_set(out)
    assert all(view[n] != old[n] for n in old) and len(view) == len(old)  # a reader sees the new set, whole
    assert not list(out.glob(".staging-*")) and not list(out.glob(".swap-*"))


def test_a_dead_writers_staging_folder_goes_on_the_next_run_a_live_one_stays(tmp_path):
    from lmc_core.publish import outputs

    if outputs.fcntl is None:
        pytest.skip("no flock on this platform: staging folders are removed after a day")
    _figure_set(1).commit(tmp_path, "04")
    dead = tmp_path / ".staging-dead"
    dead.mkdir()
    (dead / "04_a.png").write_bytes(b"partial")
    live = tmp_path / ".staging-live"
    live.mkdir()
    fd = outputs._hold(live)  # a writer still writing it
    try:
        _figure_set(2).commit(tmp_path, "04")
        assert not dead.exists() and live.exists()
    finally:
        outputs._release(fd)
    outputs.complete_swaps(tmp_path)
    assert not live.exists()


def test_a_reader_holds_off_a_swap_until_it_has_read(tmp_path):
    from lmc_core.publish import outputs

    if outputs.fcntl is None:
        pytest.skip("no flock on this platform")
    _figure_set(1).commit(tmp_path, "04")
    old = _visible(tmp_path)
    second = _figure_set(2)
    writer = threading.Thread(target=second.commit, args=(tmp_path, "04"))
    with outputs.reading(tmp_path):
        writer.start()
        time.sleep(0.5)
        assert _visible(tmp_path) == old and writer.is_alive()  # the swap waits for the reader
    writer.join(30)
    assert not writer.is_alive() and _visible(tmp_path) != old


# --------------------------------------------------------------------------- 4. folders that are files
@pytest.mark.parametrize("option", ["--store-dir", "--figures-dir", "--reports-dir"])
@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_cli_folder_option_that_is_a_file_names_the_option(tmp_path, capsys, option, under):
    from lmc_core.__main__ import main

    f = tmp_path / "a_file"
    f.write_text("not a folder")
    rc = main(["figures", "--notebooks", "01", option, str(f / "sub" if under else f)])
    err = capsys.readouterr().err
    assert rc == 2 and option in err and "is a file" in err and "Traceback" not in err


def test_cli_figures_dir_that_is_not_writable_names_the_option(tmp_path, capsys, monkeypatch):
    from lmc_core.__main__ import check_dir_option, main

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(p) == str(ro) and m & os.W_OK
                        else real(p, m, *a, **k))
    rc = main(["figures", "--notebooks", "01", "--figures-dir", str(ro / "f")])
    err = capsys.readouterr().err
    assert rc == 2 and "--figures-dir" in err and "not writable" in err
    # a read-only store is fine (finished runs are read without writing): no error from the check
    assert check_dir_option(ro, "--store-dir", writable=False) == ro


def test_cli_a_file_in_the_way_is_an_error_not_a_traceback(capsys, monkeypatch):
    from lmc_core import __main__ as cli
    from lmc_core.publish import readme

    def blocked(root, profile="quick"):
        raise PermissionError(13, "Permission denied", str(Path(root) / "README.md"))

    monkeypatch.setattr(readme, "update_readme", blocked)
    rc = cli.main(["readme"])
    err = capsys.readouterr().err
    assert rc == 1 and "README.md" in err and "Permission denied" in err


@pytest.mark.parametrize("name", ["store_dir", "figures_dir", "cache_dir"])
def test_study_folder_that_is_a_file_stops_before_any_work(tmp_path, name):
    from lmc_core.studies import grokking as study

    f = tmp_path / "a_file"
    f.write_text("x")
    params = {"profile": "smoke", "progress": False, "store_dir": str(tmp_path / "s"),
              "figures_dir": str(tmp_path / "f"), "cache_dir": str(tmp_path / "c"), name: str(f / "sub")}
    with pytest.raises(ConfigError, match=f"{name}=.*is a file"):
        study.run(params)
    assert not (tmp_path / "s").exists()


def test_run_store_under_a_file_names_store_dir(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    for root in (f, f / "sub"):
        with pytest.raises(ConfigError, match="store_dir=.*is a file"):
            RunStore(root)


@pytest.mark.parametrize("which", ["figures_dir", "reports_dir", "store_dir"])
def test_run_notebooks_refuses_a_folder_that_is_a_file_before_running_anything(tmp_path, which, monkeypatch):
    """The Python route of `make figures` (publish.reports.run_notebooks) checks its folders as the CLI does."""
    from lmc_core.config import ConfigError
    from lmc_core.publish import reports

    f = tmp_path / "a_file"
    f.write_text("not a folder")
    folders = {k: tmp_path / k for k in ("figures_dir", "reports_dir", "store_dir")} | {which: f / "sub"}
    monkeypatch.setitem(__import__("sys").modules, "papermill", None)  # importing papermill would mean it ran on
    with pytest.raises(ConfigError, match=f"{which}=.*is a file"):
        reports.run_notebooks("smoke", notebooks=["01"], progress=False, **folders)
