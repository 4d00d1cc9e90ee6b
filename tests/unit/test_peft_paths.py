"""peft adapters (issue 28, item 4): linear_path between two LoRA fine-tunes of one base model runs between their
merged weights by default (the factors only on request), and an adapter folder loads onto its base model, merged,
giving the same curve as the peft objects."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from lmc_core import linear_path, load_hf

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")  # dev dependencies: installed by `make install`
peft = pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch's vmap fallback for sdpa
V = 40


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=4, vocab_size=V, n_positions=32, bos_token_id=0, eos_token_id=0)).eval()


def lora(base, seed: int):
    """A LoRA fine-tune of `base` (random B: its update is not zero)."""
    torch.manual_seed(seed)
    m = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"],
                                                                  fan_in_fan_out=True))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return m.eval()


def batch():
    return {"test": {"input_ids": torch.randint(0, V, (4, 12), generator=torch.Generator().manual_seed(1))}}


def test_two_lora_fine_tunes_are_joined_through_their_merged_weights(base):
    a, b = lora(base, 1), lora(base, 2)
    merged = linear_path(a, b, batch(), alphas=3)
    factors = linear_path(a, b, batch(), alphas=3, lora="factors")
    assert any("merged" in n for n in merged.notes) and any("factors" in n for n in factors.notes)
    ma, mb = (copy.deepcopy(m).merge_and_unload() for m in (a, b))
    mid = copy.deepcopy(ma)
    mid.load_state_dict({n: (t + mb.state_dict()[n]) / 2 for n, t in ma.state_dict().items()})
    ids = batch()["test"]["input_ids"]
    with torch.no_grad():
        own = float(mid(input_ids=ids, labels=ids).loss)
    assert merged.curve.loss.iloc[1] == pytest.approx(own, rel=1e-5)  # the midpoint of the adapted weights
    assert abs(factors.curve.loss.iloc[1] - merged.curve.loss.iloc[1]) > 1e-4  # another path
    for i in (0, 2):  # both paths end at the fine-tunes
        assert factors.curve.loss.iloc[i] == pytest.approx(merged.curve.loss.iloc[i], rel=1e-5)
    with pytest.raises(ValueError, match="PeftModel, model_b a GPT2LMHeadModel"):
        linear_path(a, ma, batch())


def test_an_adapter_folder_loads_merged_onto_its_base(base, tmp_path):
    base.save_pretrained(tmp_path / "base")
    a, b = lora(base, 1), lora(base, 2)
    for name, m in (("a", a), ("b", b)):
        m.save_pretrained(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="pass base="):
        load_hf(tmp_path / "a")  # its adapter_config names no local folder
    ours_a = load_hf(tmp_path / "a", base=tmp_path / "base")  # logits checked against the merged model inside
    config = json.loads((tmp_path / "b" / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "base")
    (tmp_path / "b" / "adapter_config.json").write_text(json.dumps(config))
    ours_b = load_hf(tmp_path / "b")  # the base its adapter_config names
    ids = batch()["test"]["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(ours_a(ids[None])[0].view(4, 12, V), a(input_ids=ids).logits, rtol=1e-4,
                                   atol=1e-4)
    family = linear_path(ours_a, ours_b, batch(), alphas=3)
    objects = linear_path(a, b, batch(), alphas=3)
    assert family.curve.loss.to_numpy() == pytest.approx(objects.curve.loss.to_numpy(), rel=1e-5)


def llama_lora(seed: int, **config):
    torch.manual_seed(0)  # one base
    base = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=V)).eval()
    torch.manual_seed(seed)
    m = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj",
                                                                                     "up_proj", "down_proj"],
                                                  **config))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.3)
    return m.eval()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_align_models_permutes_a_lora_model_with_its_base(base, kind):
    from lmc_core import align_models
    from lmc_core.align import apply_permutation, random_permutation

    a, b = (lora(base, 1), lora(base, 2)) if kind == "gpt2" else (llama_lora(1), llama_lora(2))
    ids = batch()["test"]["input_ids"]
    al = align_models(a, b, ids, max_sweeps=3)
    assert type(al.model) is type(b) and al.max_diff_b < 1e-5 and any("peft LoRA" in n for n in al.notes)
    with torch.no_grad():
        torch.testing.assert_close(al.model(input_ids=ids).logits, b(input_ids=ids).logits, rtol=0, atol=1e-5)
    merged = [copy.deepcopy(m).merge_and_unload() for m in (a, b, al.model)]
    plain = align_models(merged[0], merged[1], ids, max_sweeps=3).model.state_dict()
    for n, t in merged[2].state_dict().items():  # the permuted adapters merge to the permuted merged model
        torch.testing.assert_close(t, plain[n], rtol=0, atol=1e-5)
    # a planted permutation of A's base and factors together is undone exactly
    ms = al.spec
    sd = a.state_dict()
    own = {n: t for n, t in sd.items() if n not in ms.ties}
    planted = copy.deepcopy(a)
    planted.load_state_dict(ms.unstacked(apply_permutation(ms.stacked(own), ms.spec,
                                                           random_permutation(ms.spec, torch.Generator().manual_seed(5))),
                                         sd))
    with torch.no_grad():
        torch.testing.assert_close(planted(input_ids=ids).logits, a(input_ids=ids).logits, rtol=0, atol=1e-5)
    back = align_models(a, planted, ids, max_sweeps=5).model.state_dict()
    for n, t in sd.items():
        assert torch.equal(back[n], t), n


def test_adapters_whose_tensors_cannot_be_permuted_are_refused_by_name():
    from lmc_core import UnsupportedModelError, align_models

    a, b = llama_lora(1, use_dora=True), llama_lora(2, use_dora=True)
    with pytest.raises(UnsupportedModelError, match="DoRA.*merge_and_unload"):
        align_models(a, b, batch()["test"]["input_ids"])


def test_an_adapter_on_the_wrong_base_is_refused_not_dropped(base, tmp_path):
    lora(base, 1).save_pretrained(tmp_path / "adapter")
    base.transformer.save_pretrained(tmp_path / "body")  # a GPT2Model: the adapter's layer names do not fit
    with pytest.raises(Exception, match="does not fit the base model"):
        load_hf(tmp_path / "adapter", base=tmp_path / "body")
