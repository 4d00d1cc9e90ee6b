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
@pytest.mark.parametrize("piece_bytes", [4 * 50 * 5, 4 * 50 * 37 * 2, 1 << 20])  # 5 rows (37 = 7 x 5 + 2), 2 of 3 copies, all
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


def test_token_losses_equal_cross_entropy_and_argmax_on_the_full_logits():
    from lmc_core.nn.linear_ce import token_losses

    h, w, b, t = [x.detach().float() if x.is_floating_point() else x for x in _inputs(k=3, n=37, d=8, v=50)]
    t[2, 5:9] = IGNORE_INDEX
    w[1, :, 11], b[1, 0, 7], b[1, 0, 11] = w[1, :, 7], 100.0, 100.0  # tied maxima: the first counts (torch.argmax)
    t[1, :3] = 11
    z = torch.baddbmm(b, h, w)
    ce, hit = token_losses(h, w, b, t, piece_bytes=4 * 50 * 5)
    ref = F.cross_entropy(z.reshape(-1, 50), t.reshape(-1), reduction="none").view(3, 37)
    torch.testing.assert_close(ce, ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(hit, (z.argmax(-1) == t) & (t != IGNORE_INDEX))
    shared = t[:1]  # targets shared by every copy ([1, N]) are broadcast
    ce1, _ = token_losses(h, w, b, shared)
    torch.testing.assert_close(ce1[2], F.cross_entropy(z[2], t[0], reduction="none"))
    assert not hit[1, :3].any() and (z[1].argmax(-1) == 7).all()


def test_the_lm_family_evaluates_a_large_vocabulary_without_the_logits_to_the_same_numbers():
    from lmc_core.config import model_preset
    from lmc_core.data.batches import Examples
    from lmc_core.families import family_of
    from lmc_core.nn.linear_ce import FUSED_EVAL_MIN_CLASSES

    for v, fused in ((FUSED_EVAL_MIN_CLASSES, True), (60, False)):
        cfg = model_preset("ptb-transformer", vocab_size=v, d_model=16, d_ff=16, context=12, tie_embeddings=v == 60)
        fam = family_of(cfg)
        model = fam.build(cfg, 3).init_weights([0, 1, 2])
        state = {n: p.detach() for n, p in model.state_dict().items()}
        tokens = torch.randint(0, v, (9, 13), generator=torch.Generator().manual_seed(1))
        examples = Examples(tokens=tokens)
        got = fam.evaluate_copies(cfg, state, examples, batch_size=4, keep=("examples",))
        m = fam.model_from_state(cfg, state, "cpu").eval()
        assert (fam.example_losses(m, {"tokens": tokens[None]}) is not None) == fused
        with torch.no_grad():
            logits, targets = fam.outputs(m, {"tokens": tokens[None]})
        ref = F.cross_entropy(logits.reshape(-1, v), targets.expand(3, -1).reshape(-1), reduction="none").view(3, -1)
        torch.testing.assert_close(torch.from_numpy(got.per_example_loss), ref, rtol=1e-5, atol=1e-5)
        acc = (logits.argmax(-1) == targets).double().mean(1).numpy()
        assert (got.accuracy == acc).all()


def test_a_piece_is_whole_copies_where_one_fits_and_rows_of_one_copy_where_not():
    from lmc_core.nn.linear_ce import piece_shape

    assert piece_shape(8, 560, 72, 8 << 20) == (8, 560)  # the character model: every copy at once
    assert piece_shape(8, 700, 10000, 8 << 20) == (1, 209)  # 10,000 words: 209 rows (8 MB) of one copy
    assert piece_shape(64, 700, 10000, 256 << 20) == (9, 700)  # a GPU's larger pieces: whole copies
    assert piece_shape(2, 3, 10**9, 8) == (1, 1)  # at least one row


def test_a_second_backward_reads_what_the_first_did_even_after_the_gradients_are_changed_in_place():
    h, w, b, t = [x.detach().float().requires_grad_() if x.is_floating_point() else x for x in _inputs()]
    loss = linear_cross_entropy(h, w, b, t).sum()
    loss.backward(retain_graph=True)
    first = [x.grad.clone() for x in (h, w, b)]
    for x in (h, w, b):
        x.grad.mul_(0)  # what clipping or zeroing does; the saved tensors must not change with it
        x.grad = None
    loss.backward()
    for x, g in zip((h, w, b), first):
        torch.testing.assert_close(x.grad, g)


def test_under_no_grad_the_gradient_of_the_logits_is_not_formed(monkeypatch):
    h, w, b, t = _inputs()
    shapes = []
    real = torch.empty

    def spy(*size, **kw):
        shapes.append(tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size))
        return real(*size, **kw)

    monkeypatch.setattr(torch, "empty", spy)
    with torch.no_grad():
        linear_cross_entropy(h, w, b, t)
    assert (3, 37, 50) not in shapes, shapes
    linear_cross_entropy(h, w, b, t)  # with gradients it is
    assert (3, 37, 50) in shapes


def test_float64_stays_float64_under_bf16_autocast():
    h, w, b, t = _inputs()
    with torch.autocast("cpu", torch.bfloat16):
        got = linear_cross_entropy(h, w, b, t)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, _reference(h, w, b, t), rtol=1e-12, atol=1e-12)


def test_empty_inputs_and_a_bias_in_the_wrong_layout_are_refused():
    from lmc_core.nn.linear_ce import token_losses

    h, w, b, t = _inputs()
    with pytest.raises(ValueError, match="must not be empty"):
        linear_cross_entropy(h[:, :0], w, b, t[:, :0])
    with pytest.raises(ValueError, match="bias"):
        linear_cross_entropy(h, w, b.reshape(50, 3), t)  # [V, K] holds K x V values but is not [K, V]
    with pytest.raises(ValueError, match="targets"):
        token_losses(h, w, b, t[:2])
