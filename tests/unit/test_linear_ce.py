"""The fused output layer and cross-entropy (lmc_core.nn.linear_ce) against torch's unfused operations."""
import pytest
import torch
import torch.nn.functional as F

from lmc_core.nn.linear_ce import IGNORE_INDEX, linear_cross_entropy
from lmc_core.train.trainer import cpu_has_bf16


def _inputs(k=3, n=37, d=8, v=50, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(k, n, d, generator=g, dtype=torch.float64).requires_grad_()
    w = (torch.randn(k, d, v, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    b = (torch.randn(k, 1, v, generator=g, dtype=torch.float64) * 0.3).requires_grad_() if bias else None
    t = torch.randint(0, v, (k, n), generator=g)
    return h, w, b, t


def _reference(h, w, b, t):
    z = torch.bmm(h, w) if b is None else torch.baddbmm(b, h, w)
    k, n, v = z.shape
    return F.cross_entropy(z.reshape(-1, v), t.reshape(-1), reduction="none").view(k, n).mean(1)


def _grads(loss_fn, inputs, weights):
    h, w, b, t = [x.detach().clone().requires_grad_(x.requires_grad) if torch.is_tensor(x) and x.is_floating_point()
                  else x for x in inputs]
    losses = loss_fn(h, w, b, t)
    (losses * weights).sum().backward()
    return losses.detach(), [x.grad for x in (h, w, b) if x is not None]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("piece_bytes", [4 * 50 * 5, 1 << 20])  # 5 rows per piece (37 = 7 x 5 + 2), or all rows
def test_losses_and_gradients_equal_the_unfused_ones(bias, piece_bytes):
    inputs = _inputs(bias=bias)
    inputs[3][1, :4] = IGNORE_INDEX  # ignored targets add nothing; the mean still divides by N
    weights = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)  # the backward scales each copy by its weight
    ref, ref_grads = _grads(_reference, inputs, weights)
    got, got_grads = _grads(lambda h, w, b, t: linear_cross_entropy(h, w, b, t, piece_bytes), inputs, weights)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)  # float64 in, float64 sums
    for a, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-13)


def test_a_tied_embedding_as_a_transposed_view_gets_its_gradient():
    h, _, _, t = _inputs(bias=False)
    emb = torch.randn(3, 50, 8, dtype=torch.float64, requires_grad=True)
    linear_cross_entropy(h, emb.transpose(1, 2), None, t).sum().backward()
    ref = emb.detach().clone().requires_grad_()
    _reference(h.detach(), ref.transpose(1, 2), None, t).sum().backward()
    torch.testing.assert_close(emb.grad, ref.grad)


def test_without_gradients_it_only_returns_the_losses():
    h, w, b, t = _inputs()
    with torch.no_grad():
        got = linear_cross_entropy(h, w, b, t, 4 * 50 * 7)
    torch.testing.assert_close(got, _reference(h, w, b, t).detach())


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions")
def test_under_bf16_autocast_it_is_as_close_to_float64_as_autocast_is():
    h, w, b, t = [x.float() if x.is_floating_point() else x for x in _inputs(k=2, n=64, d=32, v=300)]
    exact, exact_grads = _grads(_reference, [x.double() if x.is_floating_point() else x for x in (h, w, b, t)],
                                torch.ones(2, dtype=torch.float64))
    with torch.autocast("cpu", torch.bfloat16):
        auto, auto_grads = _grads(lambda *a: _reference(*a[:3], a[3]).float(), (h, w, b, t), torch.ones(2))
        got, got_grads = _grads(linear_cross_entropy, (h, w, b, t), torch.ones(2))
    for g, a, e in zip([got, *got_grads], [auto, *auto_grads], [exact, *exact_grads]):
        assert g.dtype == torch.float32  # gradients in the parameters' dtype
        err_fused, err_auto = (g.double() - e).abs().max(), (a.double() - e).abs().max()
        assert err_fused <= 2 * err_auto + 1e-6, (err_fused, err_auto)


def test_mismatched_shapes_are_refused_with_what_to_change():
    h, w, b, t = _inputs()
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy(h, w.transpose(1, 2), b, t)
    with pytest.raises(ValueError, match="targets"):
        linear_cross_entropy(h, w, b, t[:, :-1])
    with pytest.raises(ValueError, match="bias"):
        linear_cross_entropy(h, w, b[:, :, :-1], t)
