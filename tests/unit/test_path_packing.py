"""linear_path one alpha at a time through a packed working copy (lmc_core.analysis.packing), and the top-1 error read
beside the cross-entropy (path_data.cross_entropy_and_wrong): the same values as the routes they replace, bit for
bit, and the models passed in untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lmc_core import linear_path
from lmc_core.analysis import interpolate as I
from lmc_core.analysis import packing as K
from lmc_core.analysis import path_data as D
from lmc_core.analysis import paths as P


def mlp(seed: int, dtype=torch.float32, d=6, width=16, c=3) -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, c)).to(dtype).eval()


class Tied(nn.Module):
    """An embedding tied to the output layer, and a floating buffer that differs between the models."""

    def __init__(self, seed: int):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.emb = nn.Embedding(7, 5)
            self.out = nn.Linear(5, 7)
            self.out.weight = self.emb.weight
            self.register_buffer("scale", torch.rand(5) + 0.5)

    def forward(self, x):
        return self.out(self.emb(x) * self.scale)


class Transposed(nn.Module):
    """A parameter that is not contiguous (a transposed view): it cannot become a view of a flat buffer."""

    def __init__(self, seed: int):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.w = nn.Parameter(torch.randn(3, 6).t())

    def forward(self, x):
        return x @ self.w


class ChannelsLast(nn.Module):
    """1x1 convolutions in channels_last: contiguous weights whose size-1 dimensions have non-default strides, by
    which the convolution picks its kernel (a view with default strides changed the loss at alpha 0)."""

    def __init__(self, seed: int):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        self.net.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.net(x)


class Reassign(nn.Module):
    """A forward that gives its weight new storage (`.data = ...`): the packed buffer no longer holds it."""

    def __init__(self, seed: int):
        super().__init__()
        self.lin = mlp(seed)[0]
        self.head = nn.Linear(16, 3)
        with torch.random.fork_rng():
            torch.manual_seed(seed + 100)
            self.head.reset_parameters()

    def forward(self, x):
        self.lin.weight.data = self.lin.weight.data.clamp(-0.3, 0.3)
        return self.head(torch.relu(self.lin(x)))


class Recurrent(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.rnn, self.head = nn.LSTM(6, 8, batch_first=True), nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def counted(monkeypatch) -> list:
    """Count linear_path's calls of packing.pack_slots (a curve compared with the other route must have packed)."""
    calls, real = [], P.pack_slots
    monkeypatch.setattr(P, "pack_slots", lambda slots: calls.append(len(slots)) or real(slots))
    return calls


def data(n=40, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def curves(a, b, batch, monkeypatch, pack: bool):
    monkeypatch.setattr(K, "PACK_BYTES", 64 << 20 if pack else 0)
    r = linear_path(a, b, batch, alphas=9, batched=False)
    return r, r.curve[["loss", "error"]].to_numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_a_packed_working_copy_gives_the_curve_of_the_tensor_by_tensor_route(dtype, monkeypatch):
    a, b = mlp(0, dtype), mlp(1, dtype)
    x, y = data()
    before = [(p.data_ptr(), p.detach().clone()) for p in a.parameters()]
    calls = counted(monkeypatch)
    packed, got = curves(a, b, (x.to(dtype), y), monkeypatch, True)
    assert calls == [6]  # packed: three weights and three biases
    _, want = curves(a, b, (x.to(dtype), y), monkeypatch, False)
    assert np.array_equal(got, want, equal_nan=True)
    # model A (the working copy's source) keeps its own tensors and values
    assert all(p.data_ptr() == ptr and torch.equal(p, v) for p, (ptr, v) in zip(a.parameters(), before))
    assert packed.curve.loss.iloc[0] == curves(a, a, (x.to(dtype), y), monkeypatch, True)[1][0, 0]


@pytest.mark.parametrize("model", [Tied, Transposed, ChannelsLast, Reassign, Recurrent])
def test_tied_shared_strided_reassigned_and_recurrent_weights_give_the_same_curve(model, monkeypatch):
    a, b = model(0), model(1)
    batch = {Tied: lambda: (torch.randint(0, 7, (30,)), torch.randint(0, 7, (30,))),
             ChannelsLast: lambda: (torch.randn(20, 3, 6, 6), torch.randint(0, 10, (20,))),
             Recurrent: lambda: (torch.randn(30, 5, 6), torch.randint(0, 3, (30,)))}.get(model, data)()
    calls = counted(monkeypatch)
    r, got = curves(a, b, batch, monkeypatch, True)
    _, want = curves(a, b, copy_of(batch), monkeypatch, False)
    assert np.array_equal(got, want)
    # packed where it can hold the values: not a transposed weight, nor an RNN's own weight layout
    assert bool(calls) == (model not in (Transposed, Recurrent))
    if model is ChannelsLast:  # alpha 0 is model A itself, whose 1x1 convolutions keep their strides
        a2 = ChannelsLast(0)
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(a2(batch[0]), batch[1], reduction="none").double().mean()
        assert r.curve.loss.iloc[0] == float(ce)


def copy_of(batch):
    return tuple(t.clone() for t in batch)


def test_packed_writer_writes_the_values_of_interpolate_states_into_aligned_views():
    a, b = mlp(0, width=13), mlp(1, width=13)  # odd sizes: every view is padded to ALIGN_BYTES
    al = np.array([0.0, 0.1, 0.37, 0.5, 0.77, 1.0])
    want = I.interpolate_states({n: p.detach()[None] for n, p in a.named_parameters()},
                                {n: p.detach()[None] for n, p in b.named_parameters()}, al)
    work = mlp(2, width=13)
    slots = [p for _, p in work.named_parameters()]
    flat = K.pack_slots(slots)
    assert all(p.data_ptr() % K.ALIGN_BYTES == 0 and p.is_contiguous() for p in slots)
    assert all(p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for p in slots)
    write = K.packed_writer([p.detach() for p in a.parameters()], [p.detach() for p in b.parameters()], flat, al)
    for i in range(len(al)):
        write(i)
        assert all(torch.equal(p, want[n][i]) for (n, _), p in zip(work.named_parameters(), slots)), i


def test_packing_is_refused_where_it_would_not_hold():
    f32, f16 = torch.zeros(4), torch.zeros(4, dtype=torch.float16)
    assert K.packable([f32], [f32.clone()])
    assert not K.packable([f32, f16], [f32, f16])  # two dtypes
    assert not K.packable([torch.zeros(4, dtype=torch.complex64)], [torch.zeros(4, dtype=torch.complex64)])
    assert not K.packable([], [])
    big = torch.empty(K.PACK_BYTES // 16 + 1)
    assert not K.packable([big], [big])  # its float64 endpoints would exceed PACK_BYTES


def test_the_top1_error_beside_the_cross_entropy_is_argmax_s_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        a, m, c = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 5), (1, 300), (2, 20)))
        # integer logits: many ties, where argmax's first maximal index decides
        x = torch.randint(-2, 3, (a, m, c), generator=g).float() if trial % 2 else torch.randn(a, m, c, generator=g)
        y = torch.randint(0, c, (m,), generator=g)
        if trial % 3 == 0:
            y[::7] = D.IGNORE_INDEX
        if trial % 5 == 0:
            x[0, 0, 1] = float("nan")
        ce, wrong = D.cross_entropy_and_wrong(x, y)
        keep, nan = y != D.IGNORE_INDEX, torch.isnan(x).any(-1)
        ref = x.argmax(-1) != y
        assert torch.equal((wrong | nan)[:, keep], (ref | nan)[:, keep]), trial
        assert torch.equal(ce.nan_to_num(), D.cross_entropy_rows(x, y).nan_to_num())
    # a tie at the label's class: right only where the label is the first maximal class
    x = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [-0.0, 0.0, -1.0]]])
    assert D.cross_entropy_and_wrong(x, torch.tensor([0, 1, 1]))[1].tolist() == [[False, True, True]]


def test_finite_weights_whose_sum_of_squares_overflows_are_accepted_and_non_finite_ones_refused():
    from lmc_core.analysis.interpolate import check_finite_weights

    a, b = mlp(0), mlp(1)
    with torch.no_grad():
        a[0].weight[0, :2] = 3e38  # finite, but its 2-norm (checked first) overflows float32
    check_finite_weights(a, "model_a")
    x, y = data()
    assert np.isfinite(linear_path(a, b, (x, y), alphas=3).curve.loss.iloc[-1])
    for bad in (float("nan"), float("inf")):
        with torch.no_grad():
            a[2].bias[1] = bad
        with pytest.raises(ValueError, match=r"model_a has non-finite weights: '2.bias'"):
            linear_path(a, b, (x, y), alphas=3)
