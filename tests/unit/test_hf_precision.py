"""Checkpoints in bfloat16 (issue 28, item 2): as transformers objects a pair is evaluated in its own precision (the
path's ends are the objects' own bf16 losses); load_hf converts them exactly to float32, keeps the checkpoint's dtype
and the path's notes say which precision was used."""
from __future__ import annotations

import pytest
import torch

from lmc_core import linear_path, load_hf

torch.set_num_threads(1)
transformers = pytest.importorskip("transformers")  # a dev dependency: installed by `make install`
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")
V = 40


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16")
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, vocab_size=V, n_positions=32, bos_token_id=0, eos_token_id=0))
        m.to(torch.bfloat16).save_pretrained(root / f"m{seed}")
        out.append(root / f"m{seed}")
    return out


def test_a_bf16_pair_is_evaluated_in_its_own_precision_or_exactly_in_float32(folders):
    ids = torch.randint(0, V, (8, 32), generator=torch.Generator().manual_seed(0))
    objects = [transformers.GPT2LMHeadModel.from_pretrained(f, dtype=torch.bfloat16).eval() for f in folders]
    with torch.no_grad():
        own = [float(m(input_ids=ids, labels=ids).loss) for m in objects]  # transformers' own bf16 forward
        wide = [float(m.float()(input_ids=ids, labels=ids).loss) for m in
                (transformers.GPT2LMHeadModel.from_pretrained(f, dtype=torch.bfloat16).eval() for f in folders)]
    assert all(abs(o - w) > 1e-6 for o, w in zip(own, wide))  # the two precisions give different losses here
    path = linear_path(*objects, {"test": {"input_ids": ids}}, alphas=3)
    assert [path.curve.loss.iloc[i] for i in (0, 2)] == pytest.approx(own, rel=1e-6, abs=0)
    assert any("bfloat16, the models' own precision" in n for n in path.notes)
    converted = [load_hf(f) for f in folders]
    assert all(m.checkpoint_dtype == torch.bfloat16 and next(m.parameters()).dtype == torch.float32
               for m in converted)
    path = linear_path(*converted, {"test": {"input_ids": ids}}, alphas=3)
    assert any("bfloat16 checkpoints and evaluated in float32" in n for n in path.notes)
    wide_path = linear_path(*(m.float() for m in objects), {"test": {"input_ids": ids}}, alphas=3)
    assert path.curve.loss.tolist() == pytest.approx(wide_path.curve.loss.tolist(), rel=1e-5)  # float32 values
    assert path.curve.loss.iloc[0] == pytest.approx(wide[0], rel=1e-5)
