"""The byte-level BPE across processes and as a corpus level (slower than a unit test: whole-corpus encoding,
fresh interpreters)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lmc_core.data import bpe, leading_lines, line_end_id, load_corpus, source_lines


@pytest.fixture(scope="module")
def small_text() -> list[str]:
    return source_lines("shakespeare")["train"][:6000]


_CHILD = """
import json, sys
from lmc_core.data import bpe, source_lines
tok = bpe.train_bpe(source_lines("shakespeare")["train"][:6000], 700)
print(json.dumps(bpe.merges(tok)))
"""


def test_same_merges_in_separate_processes(small_text):
    """Rust's hash maps are seeded per process: the merges must not depend on their iteration order."""
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300,
                           check=True)
        outs.append(json.loads(r.stdout))
    here = json.loads(json.dumps(bpe.merges(bpe.train_bpe(small_text, 700))))
    assert outs[0] == outs[1] == here


def test_bpe_corpus_level_and_the_same_text_at_every_level(tmp_path):
    corpus = load_corpus("shakespeare", level="bpe", vocab_cap=1024, cache_dir=str(tmp_path))
    assert len(corpus.vocab) == 1024 and corpus.vocab.itos[0] == bpe.ENDOFTEXT
    again = load_corpus("shakespeare", level="bpe", vocab_cap=1024, cache_dir=str(tmp_path))
    assert again.meta.get("from_cache") and torch.equal(again.test, corpus.test)
    assert again.decode(again.test[:200]) == corpus.decode(corpus.test[:200])
    char = load_corpus("shakespeare", level="char", cache_dir=str(tmp_path))
    tb, nb = leading_lines(corpus, "train", 50_000)
    tc, nc = leading_lines(char, "train", 50_000)
    assert nb["lines"] == nc["lines"] and nb["chars"] == nc["chars"] <= 50_000 == nc["tokens"] + (50_000 - nc["chars"])
    assert corpus.decode(tb) == char.decode(tc)
    assert int(tb[-1]) == line_end_id(corpus) and nb["tokens"] < nc["tokens"]
    with pytest.raises(ValueError, match="holds no line"):
        leading_lines(corpus, "train", 1)
