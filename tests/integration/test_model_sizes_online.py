"""Notebook 07's online route (GPT-2's tokenizer for the ladder, GPT-2's weights for the fine-tune) runs end to end,
with small stand-ins for what the Hugging Face Hub would deliver (no hub here): the plumbing, not GPT-2 itself."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from lmc_core.config import model_preset
from lmc_core.data import bpe, source_lines
from lmc_core.families import family_of
from lmc_core.studies import model_sizes as study


def test_online_route_with_hub_stand_ins(monkeypatch, tmp_path):
    fake_tok = bpe.train_bpe(source_lines("shakespeare")["train"][:3000], 300)
    calls = []

    def fake_gpt2(name="gpt2", k=1, context=None):  # GPT-2's shape of config (dropout 0.1), tiny
        calls.append((name, k))
        cfg = replace(model_preset("gpt2", vocab_size=fake_tok.get_vocab_size(), d_model=32, n_layers=1, n_heads=2,
                                   d_ff=64, context=16), dropout=0.1)
        state = family_of(cfg).init(cfg, [7])
        return cfg, {n: t.expand(k, *t.shape[1:]).clone() for n, t in state.items()}

    monkeypatch.setattr(bpe, "gpt2_tokenizer", lambda: fake_tok)
    monkeypatch.setattr("lmc_core.models.pretrained.from_pretrained_gpt2", fake_gpt2)
    monkeypatch.setattr(study, "hub_reachable", lambda timeout=2.0: True)
    res = study.run({"profile": "smoke", "tokenizer": "auto", "ft_model": "auto", "sizes": ["tinygpt", "toygpt"],
                     "figures_dir": str(tmp_path / "figs"), "store_dir": str(tmp_path / "runs"),
                     "cache_dir": str(tmp_path / "cache"), "progress": False})
    sizes = res.tables["sizes"].set_index("size")
    assert sizes.loc["toygpt", "tokenizer"] == "gpt2" and sizes.loc["toygpt", "vocab"] == 300
    assert sizes.loc["tinygpt", "tokenizer"] == "char"
    ft = sizes[sizes.start == "pretrained"]
    assert list(ft.index) == ["GPT-2 (124M, OpenAI's weights)"] and calls == [("gpt2", 4)]
    runs = res.tables["runs"]
    assert not (runs.part == "pretraining").any()  # notebook 03's LM is not needed online
    stored = pd.read_json(tmp_path / "figs" / "07_summary.json", typ="series")
    assert stored["tokenizer"] == "gpt2" and stored["finetuned"] == "gpt2"
    assert "GPT-2's own BPE" in res.summary
    assert "GPT-2 (124M, OpenAI's weights), pairs fine-tuned from it" in res.summary
