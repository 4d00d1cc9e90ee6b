"""Offline Shakespeare classification tasks (play-level splits, labels, determinism) and the GLUE route."""
import time

import pytest
import torch

from lmc_core.data import DataUnavailableError, tasks

@pytest.fixture(scope="module")
def genre():
    return tasks.genre_task()


@pytest.fixture(scope="module")
def verse(genre):
    return tasks.verse_prose_task()


def _check_task(task: tasks.TextTask, max_length: int = 32) -> None:
    plays = task.meta["plays"]
    assert not (set(plays["train"]) & set(plays["valid"]) or set(plays["train"]) & set(plays["test"])
                or set(plays["valid"]) & set(plays["test"]))
    for s in tasks.SPLITS:
        d = task.split(s)
        n = d["labels"].shape[0]
        assert n > 100 and set(task.sources[s]) <= set(plays[s]) and len(task.texts[s]) == n
        assert all(t.dtype == torch.int64 for t in d.values())
        assert d["input_ids"].shape == d["attention_mask"].shape == (n, max_length)
        assert d["labels"].min() >= 0 and d["labels"].max() < task.n_classes
        assert (d["input_ids"][:, 0] == 101).all()  # [CLS]
        length = d["attention_mask"].sum(1)
        assert (d["input_ids"].gather(1, (length - 1)[:, None]) == 102).all()  # [SEP] closes each passage
        assert ((d["input_ids"] == 0) == (d["attention_mask"] == 0)).all()
        counts = task.meta["counts"][s]
        assert sorted(counts) == sorted(task.label_names) and len(set(counts.values())) == 1  # balanced
        assert sum(counts.values()) == n


def test_genre_task_has_play_level_splits_and_valid_labels(genre):
    _check_task(genre)
    labels = genre.meta["labels_of_plays"]
    for s in tasks.SPLITS:  # every split has a play of each genre; labels are the plays' genres
        assert {labels[p] for p in genre.meta["plays"][s]} == set(tasks.GENRE_LABELS)
        names = [genre.label_names[i] for i in genre.split(s)["labels"].tolist()]
        assert all(labels[p] == n for p, n in zip(genre.sources[s], names))
    held = set(genre.meta["plays"]["valid"]) | set(genre.meta["plays"]["test"])
    assert not held & tasks.disputed_plays()  # evaluation never rests on a Folio relabelling
    assert genre.meta["excluded_plays"] == ["pericles"]
    assert labels["julius-caesar"] == "tragedy" and labels["the-tempest"] == "comedy"


def test_genre_maps():
    core = tasks.genre_labels("core")
    assert len(core) == 25 and set(core.values()) == set(tasks.GENRE_LABELS)
    assert len(tasks.genre_labels("folio")) == 37
    with pytest.raises(ValueError, match="choose one of"):
        tasks.genre_labels("modern")


def test_passages_are_what_the_tokenizer_makes_of_their_text(genre):
    from lmc_core.models.pretrained import minilm_tokenizer, tokenize

    d = genre.split("valid")
    idx = list(range(0, d["labels"].shape[0], 97))
    want = tokenize(minilm_tokenizer(32), [genre.texts["valid"][i] for i in idx])
    torch.testing.assert_close(want["input_ids"], d["input_ids"][idx], rtol=0, atol=0)
    torch.testing.assert_close(want["attention_mask"], d["attention_mask"][idx], rtol=0, atol=0)


def test_tasks_are_deterministic_and_seeded(genre):
    again = tasks.genre_task.__wrapped__()  # a fresh build, not the cached object
    for s in tasks.SPLITS:
        for key, t in genre.split(s).items():
            assert torch.equal(t, again.split(s)[key]), (s, key)
    assert again.texts == genre.texts
    other = tasks.task_plays(seed=1)
    assert other != genre.meta["plays"] and set(other["test"]).isdisjoint(other["train"])


def test_verse_prose_task(verse, genre):
    _check_task(verse)
    assert verse.meta["plays"] == genre.meta["plays"]  # same plays and splits: a task boundary
    sp = verse.meta["speeches"]
    assert sp["verse"] > 3 * sp["prose"] > 3000 and sp["dropped"] < 0.06 * (sp["verse"] + sp["prose"])
    verse_lines = ["Now is the winter of our discontent", "Made glorious summer by this sun of York;",
                   "And all the clouds that lour'd upon our house", "In the deep bosom of the ocean buried."]
    prose_lines = ["Thou art so fat-witted, with drinking of old sack", "and unbuttoning thee after supper and",
                   "benches after noon, that thou hast forgotten to", "demand that truly which thou wouldst"]
    assert tasks.speech_form(verse_lines) == "verse" and tasks.speech_form(prose_lines) == "prose"
    assert tasks.speech_form(verse_lines[:3]) is None  # too short to tell
    assert tasks.speech_form(verse_lines[:2] + prose_lines[2:3] + verse_lines[2:]) is None  # ambiguous


def test_batches_are_per_copy_and_independent_of_k(genre):
    b3 = genre.batch("train", 8, [5, 6, 7], step=3)
    b1 = genre.batch("train", 8, [6], step=3)
    assert b3["input_ids"].shape == (3, 8, 32) and b3["labels"].shape == (3, 8)
    for key in b1:
        assert torch.equal(b3[key][1:2], b1[key])
    assert not torch.equal(b3["input_ids"][0], b3["input_ids"][2])
    assert torch.equal(genre.batch("train", 8, [5], step=3)["input_ids"], b3["input_ids"][:1])  # pure in (seed, step)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        genre.batch("test", 10**6, [0], 0)


def test_glue_route_fails_fast_offline_with_the_offline_default(monkeypatch, tmp_path):
    monkeypatch.setattr("lmc_core.data.hub.hub_reachable", lambda timeout=2.0: False)
    for var in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / var))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # restored after the test (the route sets them)
        monkeypatch.setenv(var, "1")
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError, match="genre_task"):
        tasks.load_glue("sst2")
    assert time.perf_counter() - t0 < 15
    with pytest.raises(ValueError, match="choose one of"):
        tasks.load_glue("wnli")
