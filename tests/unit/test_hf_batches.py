"""Hugging Face batches (issue 28, item 3): dicts of input_ids / attention_mask / labels are evaluated per sequence,
padding excluded, and the same pair gives the same curve whether passed as transformers objects or through load_hf,
equal to the models' own loss."""
from __future__ import annotations

import pytest
import torch

from lmc_core import linear_path, load_hf
from lmc_core.data.batches import IGNORE_INDEX
from lmc_core.data.hf_batches import lm_examples, next_token_labels

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")  # a dev dependency: installed by `make install`
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")  # torch's vmap fallback for sdpa


def gpt2_pair():
    config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99, n_positions=16, bos_token_id=0,
                                     eos_token_id=0)
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(transformers.GPT2LMHeadModel(config).eval())
    return out


def padded(lengths=(12, 9, 5, 12, 3, 7), width: int = 12):
    ids = torch.randint(1, 99, (len(lengths), width), generator=torch.Generator().manual_seed(3))
    mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


@torch.no_grad()
def own_loss(model, ids, mask, labels=None) -> float:
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX) if labels is None else labels
    return float(model(input_ids=ids, attention_mask=mask, labels=labels).loss)


def test_the_same_gpt2_pair_gives_the_same_curve_as_objects_and_through_load_hf():
    a, b = gpt2_pair()
    ids, mask = padded()
    batch = {"input_ids": ids, "attention_mask": mask}
    objects = linear_path(a, b, {"test": batch}, alphas=5, batch_size=4)  # two batches: token-weighted over both
    ours = linear_path(load_hf(a), load_hf(b), {"test": batch}, alphas=5)
    assert any("next token" in n for n in objects.notes)
    n_targets = int(mask[:, 1:].sum())
    assert list(objects.curve.examples) == list(ours.curve.examples) == [n_targets] * 5
    for col in ("loss", "error"):
        assert objects.curve[col].to_numpy() == pytest.approx(ours.curve[col].to_numpy(), rel=1e-5, abs=1e-7)
    assert objects.barriers.barrier.to_numpy() == pytest.approx(ours.barriers.barrier.to_numpy(), rel=1e-4,
                                                                abs=1e-6)
    for alpha, model in ((0.0, a), (1.0, b)):  # the endpoints are the models' own loss, padding excluded
        assert ours.curve[ours.curve.alpha == alpha].loss.iloc[0] == pytest.approx(own_loss(model, ids, mask),
                                                                                 rel=1e-5)


def test_batches_of_several_lengths_and_masked_labels_agree_on_both_routes():
    a, b = gpt2_pair()
    ids, mask = padded()
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[:, :4] = IGNORE_INDEX  # a prompt that is not scored (instruction tuning's convention)
    batches = [{"input_ids": ids[:3], "attention_mask": mask[:3], "labels": labels[:3]},
               {"input_ids": ids[3:, :10], "attention_mask": mask[3:, :10], "labels": labels[3:, :10]}]
    objects = linear_path(a, b, {"test": batches}, alphas=3)
    ours = linear_path(load_hf(a), load_hf(b), {"test": batches}, alphas=3)
    assert objects.curve.loss.to_numpy() == pytest.approx(ours.curve.loss.to_numpy(), rel=1e-5)
    assert int(ours.curve.examples.iloc[0]) == sum(int((next_token_labels(x["input_ids"], x["attention_mask"],
                                                                         x["labels"]) != IGNORE_INDEX).sum())
                                                   for x in batches)


def test_no_window_crosses_a_sequence_and_padding_is_never_a_target():
    ids, mask = padded((4, 2), width=5)
    ex = lm_examples({"input_ids": ids, "attention_mask": mask}, context=8, vocab_size=99)
    assert ex["tokens"].shape == (2, 5) and ex["targets"].shape == (2, 4)
    assert ex["targets"][0].tolist() == [*ids[0, 1:4].tolist(), IGNORE_INDEX]
    assert ex["targets"][1].tolist() == [int(ids[1, 1])] + [IGNORE_INDEX] * 3


def test_hugging_face_batches_the_model_cannot_take_are_refused_by_name():
    ids, mask = padded((4, 2), width=5)
    with pytest.raises(ValueError, match="row 0 is not right-padded.*padding_side"):
        lm_examples({"input_ids": ids, "attention_mask": mask.flip(1)}, context=8, vocab_size=99)
    with pytest.raises(ValueError, match="sequences of 5 tokens need a context of 4.*truncat"):
        lm_examples({"input_ids": ids, "attention_mask": mask}, context=3, vocab_size=99)
    with pytest.raises(ValueError, match="input_ids run from .* vocabulary is \\[0, 50\\)"):
        lm_examples({"input_ids": ids + 60, "attention_mask": mask}, context=8, vocab_size=50)
    with pytest.raises(ValueError, match="no position has a target"):
        lm_examples({"input_ids": ids, "attention_mask": torch.zeros_like(mask)}, context=8, vocab_size=99)


def test_an_encoder_classifier_takes_the_same_dict_on_both_routes():
    config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, max_position_embeddings=64, num_labels=3)
    a, b = (transformers.BertForSequenceClassification(config).eval() for _ in range(2))
    ids, mask = padded()
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    objects = linear_path(a, b, {"test": batch}, alphas=3)
    ours = linear_path(load_hf(a), load_hf(b), {"test": batch}, alphas=3)
    assert objects.curve.loss.to_numpy() == pytest.approx(ours.curve.loss.to_numpy(), rel=1e-4)
    with torch.no_grad():
        assert ours.curve.loss.iloc[0] == pytest.approx(float(a(**batch).loss), rel=1e-4)


def test_a_dataloader_of_dicts_is_read_once_on_both_routes():
    a, b = gpt2_pair()
    ids, mask = padded()
    rows = [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask)]
    loader = torch.utils.data.DataLoader(rows, batch_size=4)  # default collate: dicts of stacked tensors
    objects = linear_path(a, b, {"test": loader}, alphas=3)
    ours = linear_path(load_hf(a), load_hf(b), {"test": loader}, alphas=3)
    whole = linear_path(load_hf(a), load_hf(b), {"test": {"input_ids": ids, "attention_mask": mask}}, alphas=3)
    assert objects.curve.loss.to_numpy() == pytest.approx(ours.curve.loss.to_numpy(), rel=1e-5)
    assert ours.curve.loss.to_numpy() == pytest.approx(whole.curve.loss.to_numpy(), rel=1e-6)


def test_left_padding_a_tokenizers_batch_encoding_and_error_fn_keep_the_shift():
    a, b = gpt2_pair()
    ids, mask = padded()
    left = {"input_ids": ids, "attention_mask": mask}
    left = {k: torch.stack([row.roll(int((m == 0).sum())) for row, m in zip(v, mask)]) for k, v in left.items()}
    y = next_token_labels(left["input_ids"], left["attention_mask"])
    assert bool((y[left["attention_mask"] == 0] == IGNORE_INDEX).all())  # a padding position predicts nothing
    assert int((y != IGNORE_INDEX).sum()) == int(mask[:, 1:].sum())
    encoding = transformers.BatchEncoding({"input_ids": ids, "attention_mask": mask})  # what a tokenizer returns
    plain = linear_path(a, b, {"test": {"input_ids": ids, "attention_mask": mask}}, alphas=3)
    for route in ((a, b), (load_hf(a), load_hf(b))):
        r = linear_path(*route, {"test": encoding}, alphas=3)
        assert r.curve.loss.to_numpy() == pytest.approx(plain.curve.loss.to_numpy(), rel=1e-5)
    no_error = linear_path(a, b, {"test": {"input_ids": ids, "attention_mask": mask}}, alphas=3, error_fn=False)
    assert no_error.curve.loss.to_numpy() == pytest.approx(plain.curve.loss.to_numpy(), rel=1e-6)  # still shifted
    batches = [{"input_ids": ids[:3], "attention_mask": mask[:3]}, {"input_ids": ids[3:], "attention_mask": mask[3:]}]
    once = linear_path(load_hf(a), load_hf(b), {"test": (x for x in batches)}, alphas=3)  # a generator: no batch lost
    assert list(once.curve.examples) == list(plain.curve.examples)
