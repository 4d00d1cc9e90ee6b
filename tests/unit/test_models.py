"""Our K-axis models compute what the reference implementations compute (same weights, eval mode)."""
import math

import pytest
import torch
from torch import nn

from lmc_core.config import model_preset
from lmc_core.models import TransformerLM
from lmc_core.nn import DropoutSource
from lmc_core.models.convert import from_gpt2, from_torch_encoder, gpt2_config


def test_prenorm_model_equals_transformers_gpt2():
    import transformers  # the dev extra that `make test` installs
    hf_cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(hf_cfg).eval()
    cfg = gpt2_config(hf_cfg)
    ours = TransformerLM(cfg, 1)
    ours.load_state_dict(from_gpt2(ref.state_dict(), cfg))
    ours.eval()
    x = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        want = ref(x).logits  # [B, T, V]
        got = ours(x[None]).view(3, 16, 50)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_postnorm_model_equals_torch_transformer_encoder():
    torch.manual_seed(0)
    v, d, heads, ff, ctx = 40, 32, 2, 48, 12
    emb = nn.Embedding(v, d)
    enc_layers = [nn.TransformerEncoderLayer(d, heads, ff, dropout=0.2, batch_first=True) for _ in range(2)]
    encoder = nn.TransformerEncoder(enc_layers[0], 2, enable_nested_tensor=False)
    for layer, src in zip(encoder.layers, enc_layers):
        layer.load_state_dict(src.state_dict())
    dec = nn.Linear(d, v)
    for m in (emb, encoder, dec):
        m.eval()
    cfg = model_preset("ptb-transformer", vocab_size=v, d_model=d, n_heads=heads, d_ff=ff, context=ctx)
    ours = TransformerLM(cfg, 1)
    ours.load_state_dict(from_torch_encoder(emb.weight, [l.state_dict() for l in encoder.layers],
                                            dec.weight, dec.bias, cfg))
    ours.eval()
    x = torch.randint(0, v, (4, ctx))
    pos = torch.arange(ctx).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(ctx, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    mask = nn.Transformer.generate_square_subsequent_mask(ctx)
    with torch.no_grad():
        want = dec(encoder(emb(x) * math.sqrt(d) + pe, mask=mask, is_causal=True))
        got = ours(x[None]).view(4, ctx, v)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch, inner", [("prenorm", False), ("postnorm", True)])
def test_dropout_sites_match_the_reference_architectures(monkeypatch, arch, inner):
    """GPT-2 has no dropout inside the MLP; nn.TransformerEncoderLayer has one after the activation."""
    used = []
    real = DropoutSource.uniform

    def spy(self, site, shape):
        used.append(site)
        return real(self, site, shape)

    monkeypatch.setattr(DropoutSource, "uniform", spy)
    name = "tinygpt" if arch == "prenorm" else "ptb-transformer"
    extra = {"d_model": 16, "d_ff": 16} if arch == "postnorm" else {}
    cfg = model_preset(name, vocab_size=30, dropout=0.1, **extra)
    m = TransformerLM(cfg, 2).init_weights([0, 1])
    m.features(torch.randint(0, 30, (2, 3, cfg.context)), DropoutSource([1, 2], [0, 0], "cpu"))
    per_layer = [{s - 1 - 4 * i for s in used if 1 + 4 * i <= s < 5 + 4 * i} for i in range(cfg.n_layers)]
    want = {0, 1, 2, 3} if inner else {0, 1, 3}  # attention weights, attention output, [MLP inner], MLP output
    assert 0 in used and all(s == want for s in per_layer), per_layer
