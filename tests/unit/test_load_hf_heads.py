"""load_hf loses nothing (issue 28, item 2): a BERT / RoBERTa sequence classifier keeps its trained head and
num_labels, so a path between two fine-tuned checkpoints starts and ends at Hugging Face's own loss; any head or
tensor load_hf cannot carry is an error naming it, never a fresh random tensor."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmc_core import ConfigError, linear_path, load_hf
from lmc_core.data.batches import Examples
from lmc_core.models.convert import ConversionError

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")  # a dev dependency: installed by `make install`

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def bert(cls: str = "BertForSequenceClassification", seed: int = 0, **kw):
    torch.manual_seed(seed)
    return getattr(transformers, cls)(transformers.BertConfig(**TINY, max_position_embeddings=64, **kw)).eval()


def roberta(seed: int = 0, **kw):
    torch.manual_seed(seed)
    config = transformers.RobertaConfig(**TINY, max_position_embeddings=66, **kw)
    return transformers.RobertaForSequenceClassification(config).eval()


def task(n: int = 12, length: int = 9, classes: int = 3):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, 99, (n, length), generator=g)
    return ids, torch.arange(n) % classes


def fine_tuned(model, steps: int = 40):
    """The model trained until it fits the tiny task (its head is a trained head, not an initialisation)."""
    ids, y = task(classes=model.config.num_labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=y).loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def hf_loss_error(model, ids, y) -> tuple[float, float]:
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(-1) != y).float().mean())


@pytest.mark.parametrize("make", [bert, roberta], ids=["bert", "roberta"])
def test_a_fine_tuned_classifier_path_starts_and_ends_at_hugging_faces_loss(make, tmp_path):
    a, b = fine_tuned(make(seed=0, num_labels=3)), fine_tuned(make(seed=1, num_labels=3))
    for name, m in (("a", a), ("b", b)):
        m.save_pretrained(tmp_path / name)
    ours_a, ours_b = load_hf(tmp_path / "a"), load_hf(tmp_path / "b")  # logits checked against transformers inside
    assert ours_a.cfg.n_classes == 3
    ids, y = task()
    ex = Examples(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids), labels=y)
    r = linear_path(ours_a, ours_b, {"test": ex}, alphas=[0.0, 0.5, 1.0])
    for alpha, m in ((0.0, a), (1.0, b)):
        loss, err = hf_loss_error(m, ids, y)
        row = r.curve[r.curve.alpha == alpha].iloc[0]
        assert loss < 0.2 and row.loss == pytest.approx(loss, rel=1e-4, abs=1e-6)
        assert row.error == pytest.approx(err, abs=1e-9)


def test_the_model_object_and_its_folder_give_the_same_weights(tmp_path):
    m = bert(num_labels=4)
    m.save_pretrained(tmp_path)
    x, y = load_hf(m), load_hf(tmp_path)
    assert x.cfg.n_classes == 4 and set(x.state_dict()) == set(y.state_dict())
    for n, t in x.state_dict().items():
        assert torch.equal(t, y.state_dict()[n]), n


def test_a_base_encoder_gets_a_fresh_head_and_head_fresh_drops_a_trained_one_saying_so(tmp_path):
    assert load_hf(bert("BertModel"), n_classes=5).cfg.n_classes == 5  # nothing to carry: the head is new
    m = bert(num_labels=3)
    with pytest.warns(UserWarning, match="classifier.weight.*dropped"):
        fresh = load_hf(m, head="fresh", n_classes=2, head_seed=3)
    assert fresh.cfg.n_classes == 2
    with pytest.raises(ConfigError, match="n_classes=2 but the checkpoint's classifier has num_labels=3"):
        load_hf(m, n_classes=2)
    with pytest.raises(ConfigError, match="head="):
        load_hf(m, head="random")


def test_heads_load_hf_cannot_carry_are_refused_by_name(tmp_path):
    mlm = bert("BertForMaskedLM")
    mlm.save_pretrained(tmp_path)
    for source in (mlm, tmp_path):
        with pytest.raises(ConversionError, match="BertForMaskedLM has a head load_hf would lose.*head='fresh'"):
            load_hf(source)
    with pytest.warns(UserWarning, match="cls.predictions"), pytest.warns(UserWarning, match="no pooler"):
        assert load_hf(tmp_path, head="fresh").cfg.n_classes == 2  # a masked LM has no pooler: a fixed-seed one
    with pytest.raises(ConversionError, match="num_labels=1.*softmax"):
        load_hf(bert(num_labels=1))
    with pytest.raises(ConversionError, match="multi_label_classification"):
        load_hf(bert(num_labels=3, problem_type="multi_label_classification"))
    small = dict(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=32, bos_token_id=0, eos_token_id=0)
    gpt2_cls = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(**small))
    with pytest.raises(ConversionError, match="GPT2ForSequenceClassification has a head"):
        load_hf(gpt2_cls)


def test_a_tensor_transformers_would_invent_or_drop_is_refused(tmp_path):
    m = bert(num_labels=3)
    m.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    sd = load_file(weights)
    save_file({n: t for n, t in sd.items() if not n.startswith("classifier.")}, weights, metadata={"format": "pt"})
    with pytest.raises(ConversionError, match="lacks classifier"):
        load_hf(tmp_path)  # transformers would draw the classifier at random
    save_file({**sd, "extra.weight": torch.zeros(2)}, weights, metadata={"format": "pt"})
    with pytest.raises(ConversionError, match="does not read extra.weight"):
        load_hf(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]

