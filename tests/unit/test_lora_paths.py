"""LoRA paths (issue 28, item 4): linear_path on two LoRA models runs between their adapted weights W + (alpha/r) A B
by default and says so; interpolating the factors A and B each is an option, named in the notes."""
from __future__ import annotations

import pytest
import torch

from lmc_core import ConfigError, linear_path
from lmc_core.analysis.family_paths import merge_lora
from lmc_core.data.batches import Examples
from lmc_core.families import family_of
from lmc_core.models.adapters import LoRALinear
from lmc_core.models.encoder import EncoderClassifier, EncoderConfig

torch.set_num_threads(1)
CFG = EncoderConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=24, max_positions=16, n_classes=3,
                    dropout=0.0, attention_dropout=0.0, lora_rank=2, tune="lora").validate()


def lora_model(seed: int) -> EncoderClassifier:
    """One shared backbone and head (seed 0), LoRA factors of their own (seed): two fine-tunes of one model."""
    m = EncoderClassifier(CFG, 1).init_weights([0])
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_a.copy_(torch.randn(mod.lora_a.shape, generator=g))
                mod.lora_b.copy_(torch.randn(mod.lora_b.shape, generator=g))
    return m.eval()


def data():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (8, 6), generator=g)
    return Examples(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids),
                    labels=torch.arange(8) % 3)


def test_the_merged_path_is_the_straight_line_between_the_adapted_weights():
    a, b = lora_model(1), lora_model(2)
    sa, merged = merge_lora(a, a.state_dict())
    sb, _ = merge_lora(b, b.state_dict())
    assert merged and all(torch.equal(sa[f"{n}.lora_b"], torch.zeros_like(sa[f"{n}.lora_b"])) for n in merged)
    fam = family_of(CFG)
    ex = data()
    for model, state in ((a, sa), (b, sb)):  # merging keeps each model's function
        assert float(fam.evaluate(CFG, state, ex).loss[0]) == pytest.approx(
            float(fam.evaluate(CFG, model.state_dict(), ex).loss[0]), rel=1e-5)
    mid = {n: (sa[n] + sb[n]) / 2 for n in sa}
    r = linear_path(a, b, {"test": ex}, alphas=[0.0, 0.5, 1.0])
    assert any("LoRA merged" in n for n in r.notes)
    assert r.curve.loss.iloc[1] == pytest.approx(float(fam.evaluate(CFG, mid, ex).loss[0]), rel=1e-5)
    factors = linear_path(a, b, {"test": ex}, alphas=[0.0, 0.5, 1.0], lora="factors")
    assert any("LoRA factors" in n for n in factors.notes)
    plain_mid = {n: (a.state_dict()[n] + b.state_dict()[n]) / 2 for n in sa}
    assert factors.curve.loss.iloc[1] == pytest.approx(float(fam.evaluate(CFG, plain_mid, ex).loss[0]), rel=1e-5)
    assert abs(factors.curve.loss.iloc[1] - r.curve.loss.iloc[1]) > 1e-3  # the two paths differ in the middle
    for path in (r, factors):  # both end at the models
        assert path.curve.loss.iloc[0] == pytest.approx(float(fam.evaluate(CFG, a.state_dict(), ex).loss[0]),
                                                         rel=1e-5)
    with pytest.raises(ConfigError, match="lora="):
        linear_path(a, b, {"test": ex}, lora="A")
