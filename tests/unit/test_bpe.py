"""The byte-level BPE trained on the training plays: deterministic, exact round trips, cached by what it was
derived from; GPT-2's own tokenizer fails fast offline, naming the offline default."""
from __future__ import annotations

import json
import sys
import time

import pytest
import torch

from lmc_core.config import ConfigError, DataConfig
from lmc_core.data import DataUnavailableError, bpe, load_corpus, source_lines


@pytest.fixture(scope="module")
def lines() -> dict[str, list[str]]:
    return source_lines("shakespeare")


@pytest.fixture(scope="module")
def small_text(lines) -> list[str]:
    return lines["train"][:6000]


@pytest.fixture(scope="module")
def trained(lines):
    """The quick profile's tokenizer: 4096 entries trained on all training plays."""
    return bpe.train_bpe(lines["train"], 4096)


def test_same_corpus_gives_the_same_merges(small_text):
    a, b = bpe.train_bpe(small_text, 700), bpe.train_bpe(list(small_text), 700)
    assert bpe.merges(a) == bpe.merges(b) and len(bpe.merges(a)) > 300
    assert bpe.vocab_tokens(a) == bpe.vocab_tokens(b)
    other = bpe.train_bpe(small_text[::-1][:3000], 700)  # another text: other merges (the check can fail)
    assert bpe.merges(other) != bpe.merges(a)


def test_round_trips_the_test_plays(trained, lines):
    ids = bpe.encode_lines(trained, lines["test"])
    assert ids.dtype == torch.long and ids.dim() == 1
    assert int(ids.max()) < trained.get_vocab_size() == 4096
    assert bpe.decode(trained, ids) == "".join(ln + "\n" for ln in lines["test"])
    # one line-end token per line, and nothing else is a newline
    assert int((ids == bpe.line_end_id(trained)).sum()) == len(lines["test"])
    # a subword vocabulary: fewer tokens than characters, more than words
    n_chars = sum(len(ln) + 1 for ln in lines["test"])
    assert n_chars / 5 < ids.numel() < n_chars / 2


def test_cached_by_what_it_was_derived_from(small_text, tmp_path):
    a = bpe.bpe_tokenizer(small_text, 600, tmp_path)
    files = sorted(tmp_path.glob("bpe-600-*.json"))
    assert len(files) == 1
    t0 = time.perf_counter()
    b = bpe.bpe_tokenizer(small_text, 600, tmp_path)
    assert bpe.merges(a) == bpe.merges(b) and time.perf_counter() - t0 < 1.0
    bpe.bpe_tokenizer(small_text[:-1], 600, tmp_path)  # other text: another file
    bpe.bpe_tokenizer(small_text, 650, tmp_path)  # other size: another file
    assert len(list(tmp_path.glob("bpe-*.json"))) == 3
    files[0].write_text(files[0].read_text()[:100])  # a truncated file is retrained, never used
    c = bpe.bpe_tokenizer(small_text, 600, tmp_path)
    assert bpe.merges(c) == bpe.merges(a)
    assert json.loads(files[0].read_text())["key"]


def test_bad_vocabulary_sizes_are_named():
    with pytest.raises(ConfigError, match="vocab_cap=100 is too small"):
        DataConfig(level="bpe", vocab_cap=100).validate()
    with pytest.raises(ValueError, match="vocab_cap=100 is too small"):
        load_corpus("shakespeare", level="bpe", vocab_cap=100)
    with pytest.raises(ValueError, match="at least 257"):
        bpe.train_bpe(["abc"], 100)
    DataConfig(level="bpe", vocab_cap=4096).validate()
    DataConfig(level="gpt2").validate()


def test_gpt2_tokenizer_offline_fails_fast_naming_the_default(monkeypatch, tmp_path):
    for var in ("HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    if "huggingface_hub.constants" in sys.modules:
        const = sys.modules["huggingface_hub.constants"]
        monkeypatch.setattr(const, "HF_HUB_OFFLINE", False, raising=False)
        monkeypatch.setattr(const, "HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)
    monkeypatch.setattr("lmc_core.data.hub.hub_reachable", lambda timeout=2.0: False)
    t0 = time.perf_counter()
    with pytest.raises(DataUnavailableError) as ei:
        load_corpus("shakespeare", level="gpt2", cache_dir=str(tmp_path / "cache"))
    assert time.perf_counter() - t0 < 20
    assert 'level="bpe"' in str(ei.value) and "offline default" in str(ei.value)
