"""The shipped MiniLM (a real 22.7M-parameter BERT checkpoint folder) through the your-own-models route: read by
load_hf, flat when interpolated with itself, a planted permutation recovered, a wrong spec refused."""
from __future__ import annotations

import pytest
import torch

import lmc_core
from lmc_core import SpecError, align_models, linear_path, load_hf
from lmc_core.align import Axis, PermutationSpec, UnitGroup, apply_permutation, random_permutation

torch.set_num_threads(1)
pytest.importorskip("transformers")  # a dev dependency: installed by `make install`


def test_the_shipped_minilm_package_model():
    from lmc_core.models.pretrained import minilm_dir

    a = load_hf(minilm_dir(), n_classes=3, head_seed=0)
    tok = torch.randint(1000, 5000, (4, 10), generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 1])
    fam = lmc_core.family_of(a.cfg)
    ex = lmc_core.data.batches.Examples(input_ids=tok, attention_mask=torch.ones_like(tok),
                                        token_type_ids=torch.zeros_like(tok), labels=y)
    r = linear_path(a, a, {"test": ex}, alphas=3)
    assert (r.barriers.barrier.abs() < 1e-6).all()
    own = fam.evaluate(a.cfg, a.state_dict(), ex)
    assert r.curve.loss.iloc[0] == pytest.approx(float(own.loss[0]), rel=1e-9)  # the endpoint is the model
    spec = fam.perm_spec(a.cfg)
    perms = random_permutation(spec, torch.Generator().manual_seed(5))
    c = fam.model_from_state(a.cfg, apply_permutation(a.state_dict(), spec, perms)).eval()
    r = linear_path(a, c, {"test": ex}, alphas=[0.0, 1.0])
    assert r.curve.loss.iloc[0] == pytest.approx(r.curve.loss.iloc[1], rel=1e-4)  # endpoints: the same function
    al = align_models(a, c, tok, max_sweeps=4)
    for n, t in a.state_dict().items():
        assert torch.equal(al.model.state_dict()[n], t), n
    wrong = PermutationSpec(tuple(g for g in spec.groups if g.name != "pooler") + (
        UnitGroup("pooler", 384, (Axis("pooler.weight", 2), Axis("pooler.bias", 2))),))
    with pytest.raises(SpecError, match="pooler"):
        align_models(a, c, tok, spec=wrong)
