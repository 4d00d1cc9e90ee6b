"""Fault injection on the own-models path API (lmc_core.linear_path, path_outputs, judge_paths), the barrier functions
and the findings: non-finite values, half precision, BatchNorm statistics over uneven batches, unbounded and
unvalidated inputs. Each test injects one fault and asserts the outcome (the error and the parameter it names, or
the corrected value)."""
from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lmc_core import linear_path
from lmc_core.align.check import NonFiniteWeightsError
from lmc_core.analysis import barrier as B
from lmc_core.analysis import findings as F
from lmc_core.analysis import interpolate as I
from lmc_core.analysis import path_data as D
from lmc_core.analysis import paths as P
from lmc_core.analysis import stats as S
from lmc_core.analysis.criteria import RELATIVE_LOSS
from lmc_core.analysis.metrics import judge_barriers
from lmc_core.analysis.path_result import judge_paths
from lmc_core.config import ConfigError


def mlp(seed: int, dtype=torch.float32, d=6, c=3) -> nn.Sequential:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, c)).to(dtype).eval()


def data(n=40, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


class Counting(nn.Module):
    """An MLP that counts its forward calls (to show a refusal comes before any evaluation)."""

    def __init__(self, seed=0):
        super().__init__()
        self.net = mlp(seed)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


class NaNHead(nn.Module):
    """Finite weights, NaN logits (a log of a negative number): the error of such an output is no value."""

    def __init__(self, seed=0):
        super().__init__()
        self.net = mlp(seed)

    def forward(self, x):
        return self.net(x) + torch.log(-torch.ones(1))


def old_subchord(a: np.ndarray, v: np.ndarray) -> float:
    """The definition, over every triple i < k < j (the O(n^3) search subchord replaced)."""
    i, k, j = np.ix_(np.arange(a.size), np.arange(a.size), np.arange(a.size))
    i, k, j = np.nonzero((i < k) & (k < j))
    w = (a[k] - a[i]) / (a[j] - a[i])
    return max(0.0, float(np.max(v[k] - ((1 - w) * v[i] + w * v[j]), initial=0.0)))


# ------------------------------------------------------------------------- 1. non-finite values are never "no barrier"
@pytest.mark.parametrize("which, name, value", [("model_b", "0.weight", float("nan")),
                                                ("model_a", "2.bias", float("inf"))])
def test_non_finite_weights_are_refused_naming_model_and_parameter(which, name, value):
    a, b = Counting(0), Counting(1)
    bad = a if which == "model_a" else b
    with torch.no_grad():
        bad.get_parameter(f"net.{name}").view(-1)[0] = value
    with pytest.raises(NonFiniteWeightsError, match=rf"{which}.*net\.{name}"):
        linear_path(a, b, data())
    with pytest.raises(ValueError, match=which):
        P.path_outputs(a, b, data()[0])
    assert a.calls == b.calls == 0  # refused before any evaluation


def test_a_loss_fn_returning_nan_is_not_finite_not_convex():
    a, b = mlp(0), mlp(1)
    r = linear_path(a, b, data(), loss_fn=lambda out, batch: torch.full((out.shape[0],), float("nan")))
    v = r.verdicts[("eval", "loss")]
    assert v.verdict == F.NOT_FINITE and "no barrier" not in r.text() and "convex" not in v.text()
    rows = r.barriers[r.barriers.metric == "loss"]
    assert len(rows) == len(B.DEFINITIONS) and rows.barrier.isna().all() and not rows.convex.any()


def test_nan_logits_give_a_nan_error_and_no_finding():
    x, y = data()
    out = torch.tensor([[0.0, float("nan"), 1.0], [2.0, 0.0, 1.0]])
    batch = D.parse_batch((out, torch.tensor([0, 0])))
    err = D.top1_error(out, batch)
    assert np.isnan(err[0].item()) and err[1].item() == 0.0  # argmax of a NaN row is not a prediction
    ce, wrong = D.default_metrics(out[None], batch, {})
    assert torch.isnan(wrong[0, 0]) and wrong[0, 1].item() == 0.0
    r = linear_path(NaNHead(0), NaNHead(1), (x, y))
    assert r.curve.error.isna().all()
    assert {k: v.verdict for k, v in r.verdicts.items()} == {("eval", "loss"): F.NOT_FINITE,
                                                              ("eval", "error"): F.NOT_FINITE}


def test_judge_paths_with_one_non_finite_path_is_not_finite():
    x, y = data()
    fine = [linear_path(mlp(2 * i), mlp(2 * i + 1), (x, y)) for i in range(5)]
    nan = linear_path(mlp(20), mlp(21), (x, y), loss_fn=lambda out, b: torch.full((out.shape[0],), float("nan")))
    assert judge_paths(fine).verdict != F.NOT_FINITE
    assert judge_paths(fine + [nan]).verdict == F.NOT_FINITE
    assert judge_paths([nan, *fine], metric="loss").verdict == F.NOT_FINITE


def test_interpolation_is_exact_at_the_ends_even_next_to_a_non_finite_value():
    a, b = torch.tensor([1.5, -0.0, 3.0]), torch.tensor([float("nan"), float("inf"), 2.0])
    rows = I.lerp_rows(a, b, [0.0, 0.5, 1.0])
    assert torch.equal(rows[0], a) and torch.signbit(rows[0][1])  # alpha 0 is a itself (-0.0 included)
    assert torch.equal(rows[2].nan_to_num(), b.nan_to_num())


# --------------------------------------------------------------------------- 2. one exact interpolation for every route
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batched", [True, False, "auto"])
def test_half_precision_model_with_its_copy_is_exactly_flat(dtype, batched):
    x, y = data()
    a = mlp(0, dtype)
    r = linear_path(a, copy.deepcopy(a), (x.to(dtype), y), alphas=9, batched=batched)
    assert (r.barriers.barrier == 0).all()
    assert r.curve.loss.nunique() == 1 and r.curve.error.nunique() == 1


def _states(a: nn.Module, b: nn.Module):
    return ({n: t[None] for n, t in a.state_dict().items()}, {n: t[None] for n, t in b.state_dict().items()})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_every_route_interpolates_as_interpolate_states_bit_for_bit(dtype, monkeypatch):
    a, b = mlp(0, dtype), mlp(1, dtype)
    al = np.array([0.0, 0.1, 0.3, 0.37, 0.5, 0.77, 0.9, 1.0])
    want = I.interpolate_states(*_states(a, b), al)
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    # the batched route (stacked_mix), with blocks small enough to cut tensors and alphas
    for mix in (I.MIX_BYTES, 512):
        monkeypatch.setattr(I, "MIX_BYTES", mix)
        got = I.stacked_mix({n: t.detach() for n, t in pa.items()}, {n: t.detach() for n, t in pb.items()}, al)
        assert all(torch.equal(got[n], want[n]) for n in got), mix
    # one alpha at a time (weight_writer): through one flat vector, and tensor by tensor
    for flat_bytes in (1 << 30, 0):
        out = {n: torch.empty_like(t) for n, t in pa.items()}
        write = I.weight_writer({n: t.detach() for n, t in pa.items()}, {n: t.detach() for n, t in pb.items()},
                                out, al, flat_bytes)
        for i in range(len(al)):
            write(i)
            assert all(torch.equal(out[n], want[n][i]) for n in out), (flat_bytes, i)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_path_outputs_are_those_of_models_loaded_from_interpolate_states(dtype):
    a, b = mlp(0, dtype), mlp(1, dtype)
    x = data()[0].to(dtype)
    al = [0.0, 0.1, 0.37, 0.5, 0.9, 1.0]
    st = I.interpolate_states(*_states(a, b), al)
    ref = []
    for i in range(len(al)):
        m = copy.deepcopy(a)
        m.load_state_dict({n: t[i] for n, t in st.items()})
        with torch.no_grad():
            ref.append(m(x))
    ref = torch.stack(ref)
    assert torch.equal(P.path_outputs(a, b, x, al, batched=False), ref)  # bit for bit
    # batched: the same weights (bit for bit), evaluated by one vmapped matmul, which rounds its own way
    torch.testing.assert_close(P.path_outputs(a, b, x, al, batched=True), ref,
                               **({} if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)))
    plan = P.PathPlan(a, b, "interpolate", None, [])
    params, _ = plan.at(np.asarray(al))
    assert all(torch.equal(params[n], st[n]) for n in params)


# --------------------------------------------------------------------------- 3. BatchNorm statistics weigh by examples
class BNNet(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.lin = nn.Linear(6, 12)
            self.bn = nn.BatchNorm1d(12)
            self.out = nn.Linear(12, 3)
        self.eval()

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.lin(x))))


def test_batchnorm_statistics_of_uneven_batches_are_those_of_one_batch():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(600, 6, generator=g) * 2 + 1
    x[512:] += 3.0  # the short last batch differs: a per-batch average would over-weight it
    y = torch.randint(0, 3, (600,), generator=g)
    a, b = BNNet(0), BNNet(1)
    state, bns, cpu = a.state_dict(), ["bn"], torch.device("cpu")
    uneven = D.bn_statistics(a, state, bns, D.batches((x, y), 256), cpu)  # 256 + 256 + 88 examples
    whole = D.bn_statistics(a, state, bns, D.batches((x, y), 600), cpu)
    with torch.no_grad():
        h = a.lin(x).double()
    torch.testing.assert_close(uneven["bn.running_mean"], whole["bn.running_mean"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(uneven["bn.running_var"], whole["bn.running_var"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(whole["bn.running_mean"].double(), h.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(whole["bn.running_var"].double(), h.var(0, unbiased=True), rtol=1e-6, atol=1e-6)
    per_batch = torch.stack([h[i : i + 256].mean(0) for i in (0, 256, 512)]).mean(0)  # torch's momentum=None
    assert (per_batch - h.mean(0)).abs().max() > 0.1  # the fault this replaces was real on these data
    r256 = linear_path(a, b, (x, y), train_data=(x, y), batch_size=256, alphas=5)
    r600 = linear_path(a, b, (x, y), train_data=(x, y), batch_size=600, alphas=5)
    np.testing.assert_allclose(r256.curve.loss, r600.curve.loss, rtol=1e-5)


# --------------------------------------------------------------------------- 4. unbounded and unvalidated inputs
@pytest.mark.parametrize("alphas", [10 ** 6, B.MAX_ALPHAS + 1, "11", 7.9, True, 1, [0.0, float("nan"), 1.0],
                                    ["0", "1"], [0.0, 0.5], np.linspace(0, 1, B.MAX_ALPHAS + 1), [[0.0, 1.0]]])
def test_bad_alphas_are_refused_before_any_evaluation(alphas):
    a, b = Counting(0), Counting(1)
    t = time.perf_counter()
    with pytest.raises(ValueError, match="alphas"):
        linear_path(a, b, data(), alphas=alphas)
    with pytest.raises(ValueError, match="alphas"):
        P.path_outputs(a, b, data()[0], alphas=alphas)
    assert a.calls == b.calls == 0 and time.perf_counter() - t < 5


def test_alpha_counts_are_bounded_everywhere():
    assert B.MAX_ALPHAS == 1001
    with pytest.raises(ConfigError, match="alphas"):
        I.alpha_grid(10 ** 6)
    with pytest.raises(ValueError, match="alphas"):
        I.interpolate_states({"w": torch.zeros(1, 2)}, {"w": torch.ones(1, 2)}, np.zeros(B.MAX_ALPHAS + 1))
    with pytest.raises(ValueError, match="alphas"):
        I.interpolate_states({"w": torch.zeros(1, 2)}, {"w": torch.ones(1, 2)}, ["0", "1"])
    with pytest.raises(ValueError, match="MAX_ALPHAS"):
        B.barrier(np.linspace(0, 1, B.MAX_ALPHAS + 1), np.zeros(B.MAX_ALPHAS + 1))


def test_subchord_is_quadratic_with_the_values_of_every_triple():
    rng = np.random.default_rng(0)
    for t in range(300):
        n = int(rng.integers(2, 50))
        a = np.linspace(0, 1, n) if t % 3 == 0 else np.concatenate([[0.0], np.sort(rng.random(max(n - 2, 0))), [1.0]])
        v = rng.normal(size=a.size) if t % 2 else np.cumsum(rng.normal(size=a.size))
        if t % 5 == 0:
            v = np.round(v, 1)  # ties
        assert B.barrier(a, v, "subchord") == pytest.approx(old_subchord(a, v), rel=1e-12, abs=1e-15), t
    a = np.linspace(0, 1, B.MAX_ALPHAS)
    v = np.sin(7 * a) + rng.normal(size=a.size) * 0.01
    t0 = time.process_time()
    got = B.barrier(a, v, "subchord")  # the O(n^3) search took 49 s here; O(n^2) well under a second
    assert time.process_time() - t0 < 2.0 and got > 0


@pytest.mark.parametrize("kw, name", [
    (dict(threshold=float("nan")), "threshold"), (dict(threshold=-5), "threshold"), (dict(threshold=0), "threshold"),
    (dict(threshold="2"), "threshold"), (dict(threshold=True), "threshold"), (dict(definition="max"), "definition"),
    (dict(batch_size=0), "batch_size"), (dict(batch_size=2.5), "batch_size"), (dict(memory_mb=0), "memory_mb"),
    (dict(memory_mb=-1), "memory_mb"), (dict(bn="copy"), "bn"), (dict(batched="yes"), "batched"),
])
def test_linear_path_refuses_parameters_out_of_their_domain(kw, name):
    a, b = Counting(0), Counting(1)
    with pytest.raises(ConfigError, match=name):
        linear_path(a, b, data(), **kw)
    assert a.calls == b.calls == 0


def test_judging_refuses_bad_definitions_thresholds_and_confidences():
    x, y = data()
    r = [linear_path(mlp(0), mlp(1), (x, y))]
    with pytest.raises(ConfigError, match="definition"):
        judge_paths(r, definition="max")  # was a KeyError
    with pytest.raises(ConfigError, match="threshold"):
        judge_paths(r, threshold=float("nan"))
    with pytest.raises(ConfigError, match="metric"):
        judge_paths(r, metric="accuracy")
    with pytest.raises(ConfigError, match="definition"):
        B.barrier([0, 1], [0, 1], "max")
    with pytest.raises(ConfigError, match="threshold"):
        B.is_stable(1.0, threshold=-5)
    with pytest.raises(ConfigError, match="definition"):
        judge_barriers(r[0].barriers, "eval", "loss", definition="max")
    for f in (lambda c: S.studentized_interval(np.arange(6.0), confidence=c),
              lambda c: S.studentized_difference(np.arange(6.0), np.arange(5.0), confidence=c),
              lambda c: S.shared_pairs_interval([1.0, 2.0, 3.0, 1.5, 2.5, 0.5], [0, 0, 0, 1, 1, 2], [1, 2, 3, 2, 3, 3],
                                                confidence=c)):
        for c in (1.5, 0.0, 1.0, float("nan"), True):
            with pytest.raises(ConfigError, match="confidence"):
                f(c)
    with pytest.raises(ConfigError, match="n_resamples"):
        S.studentized_interval(np.arange(6.0), n_resamples=0)
    with pytest.raises(ConfigError, match="alternative"):
        S.sign_flip_test([1.0, 2.0], alternative="bigger")
    with pytest.raises(ConfigError, match="n_permutations"):
        S.label_permutation_null(lambda lab: 0.0, [0, 1], n_permutations=-1)
    with pytest.raises(ConfigError, match="digits"):
        F.threshold([1.0], criterion=RELATIVE_LOSS, question="q", metric="m", digits=-1)
    with pytest.raises(ConfigError, match="convex_tol"):
        F.threshold([1.0], criterion=RELATIVE_LOSS, question="q", metric="m", convex_tol=float("nan"))


@pytest.mark.parametrize("labels, match", [(torch.tensor([0, 1, 5, 2] * 10), "labels run from 0 to 5.*3 outputs"),
                                           (torch.tensor([0, -1, 2, 1] * 10), "labels run from -1 to 2"),
                                           (torch.tensor([0.0, 1.0, 2.0, 1.0] * 10), "integer class labels")])
@pytest.mark.parametrize("batched", [True, False])
def test_labels_that_do_not_fit_the_outputs_are_a_clear_error(labels, match, batched):
    with pytest.raises(ValueError, match=f"data: .*{match}|data: the default loss needs {match}"):
        linear_path(mlp(0), mlp(1), (data()[0], labels), batched=batched)


def test_no_pairs_is_said_as_such():
    with pytest.raises(ValueError, match="no pairs"):
        judge_paths([])
    f = F.threshold([], [], criterion=RELATIVE_LOSS, question="q", metric="m")
    assert f.verdict == F.NOT_TESTABLE and "no pairs" in f.text() and "not finite" not in f.text()
    g = F.shared_pairs([], [], [], criterion=RELATIVE_LOSS, question="q", metric="m")
    assert g.verdict == F.NOT_TESTABLE and "no pairs" in g.text()
    assert F.paired([], question="q", metric="m", unit="u").verdict == F.NOT_TESTABLE
    with pytest.raises(ValueError, match="no pairs"):
        judge_barriers(pd.DataFrame(), "eval", "loss")


# ----------------------------------------------------------------------- 5. review findings (regressions and claims)
class UnusedBN(nn.Module):
    """A BatchNorm layer the forward pass never runs (an auxiliary head): its statistics never receive an input."""

    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.lin, self.bn, self.aux = nn.Linear(6, 3), nn.BatchNorm1d(6), nn.BatchNorm1d(3)
        self.eval()

    def forward(self, x):
        return self.lin(self.bn(x))


@pytest.mark.parametrize("batched", [True, False])
def test_a_batchnorm_layer_the_forward_never_runs_keeps_its_statistics_with_a_note(batched):
    x, y = data()
    a, b = UnusedBN(0), UnusedBN(1)
    r = linear_path(a, b, (x, y), train_data=(x, y), alphas=3, batched=batched)  # was a TypeError (acc[j] is None)
    assert np.isfinite(r.curve.loss).all()
    assert any("never ran" in n and "'aux'" in n and "cannot affect the outputs" in n for n in r.notes), r.notes
    unused: set = set()
    st = D.bn_statistics(a, a.state_dict(), ["bn", "aux"], D.batches((x, y), 16), torch.device("cpu"), unused)
    assert unused == {"aux"} and set(st) == {"bn.running_mean", "bn.running_var"}


class Masked(nn.Module):
    """A linear layer plus a fixed -inf mask buffer (as a causal mask) that the forward pass turns into zeros."""

    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.lin = nn.Linear(6, 3)
        self.register_buffer("mask", torch.tensor([0.0, float("-inf"), 0.0]))

    def forward(self, x):
        return self.lin(x) + torch.where(torch.isinf(self.mask), torch.zeros_like(self.mask), self.mask)


@pytest.mark.parametrize("batched", [True, False, "auto"])
def test_an_equal_minus_inf_buffer_is_held_fixed_not_refused(batched):
    x, y = data()
    a, b = Masked(0), Masked(1)
    r = linear_path(a, b, (x, y), alphas=5, batched=batched)  # was NonFiniteWeightsError naming 'mask'
    assert np.isfinite(r.curve.loss).all()
    out = P.path_outputs(a, b, x, alphas=3, batched=batched is not False)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], a(x).detach())
    with torch.no_grad():
        b.mask[0] = float("-inf")  # now it differs: interpolated, so it must be finite
    with pytest.raises(NonFiniteWeightsError, match="model_a has non-finite weights: 'mask'"):
        linear_path(a, b, (x, y), batched=batched)
    with pytest.raises(NonFiniteWeightsError, match="model_a has non-finite weights: 'mask'"):
        P.path_outputs(a, b, x)
    with torch.no_grad():
        b.mask[0] = 0.0
        b.lin.bias[0] = float("inf")  # a parameter is always interpolated
    with pytest.raises(NonFiniteWeightsError, match=r"model_b.*lin\.bias"):
        linear_path(a, b, (x, y), batched=batched)


def test_the_family_route_and_interpolate_states_hold_an_equal_infinite_buffer_fixed():
    from lmc_core import MLPConfig, family_of
    from lmc_core.ensemble import copy_state

    cfg = MLPConfig(d_in=6, hidden=(8,), n_classes=3)
    fam = family_of(cfg)
    state = fam.init(cfg, [1, 2])
    m, n = (fam.model_from_state(cfg, copy_state(state, k)) for k in (0, 1))
    for model in (m, n):
        model.register_buffer("mask", torch.tensor([0.0, float("-inf")]), persistent=False)
    r = linear_path(m, n, data(), alphas=3)  # was NonFiniteWeightsError naming 'mask'
    assert r.mode == "family ensemble" and np.isfinite(r.curve.loss).all()
    n.mask[0] = float("-inf")
    with pytest.raises(NonFiniteWeightsError, match="model_a has non-finite weights: 'mask'"):
        linear_path(m, n, data(), alphas=3)
    sa = {"w": torch.ones(1, 2), "mask": torch.tensor([[0.0, float("-inf")]])}
    sb = {"w": torch.zeros(1, 2), "mask": torch.tensor([[0.0, float("-inf")]])}
    st = I.interpolate_states(sa, sb, [0.0, 0.3, 1.0])
    assert torch.equal(st["mask"], sa["mask"].expand(3, 2))  # held fixed: lerp would make -inf - -inf a NaN
    assert torch.equal(st["w"][1], torch.full((2,), 0.7))


class TwoBN(nn.Module):
    """Two BatchNorm layers in a row: the second sees inputs the first normalised per batch."""

    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.lin1, self.bn1 = nn.Linear(6, 10), nn.BatchNorm1d(10)
            self.lin2, self.bn2 = nn.Linear(10, 8), nn.BatchNorm1d(8)
            self.out = nn.Linear(8, 3)
        self.eval()

    def forward(self, x):
        return self.out(torch.relu(self.bn2(self.lin2(torch.relu(self.bn1(self.lin1(x)))))))


def test_batchnorm_statistics_first_layer_one_batch_deeper_layers_per_batch_as_documented():
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(100, 6, generator=g) * 2 + 1, torch.randint(0, 3, (100,), generator=g)
    a, cpu = TwoBN(0), torch.device("cpu")
    bns = ["bn1", "bn2"]
    small = D.bn_statistics(a, a.state_dict(), bns, D.batches((x, y), 16), cpu)  # 6 x 16 + 4
    whole = D.bn_statistics(a, a.state_dict(), bns, D.batches((x, y), 100), cpu)
    with torch.no_grad():
        h1 = a.lin1(x).double()
        # the second layer's inputs as in training: each batch normalised by its own statistics in the first layer
        h2 = torch.cat([a.lin2(torch.relu(F_bn_train(a.bn1, a.lin1(x[i : i + 16])))) for i in range(0, 100, 16)])
        h2 = h2.double()
    # the first BatchNorm layer: the statistics of one batch holding every example, whatever the batching
    for st in (small, whole):
        torch.testing.assert_close(st["bn1.running_mean"].double(), h1.mean(0), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(st["bn1.running_var"].double(), h1.var(0), rtol=1e-6, atol=1e-6)
    # a deeper layer: its inputs normalised per batch (as in training), pooled by example count
    torch.testing.assert_close(small["bn2.running_mean"].double(), h2.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(small["bn2.running_var"].double(), h2.var(0), rtol=1e-5, atol=1e-6)
    assert (small["bn2.running_var"] - whole["bn2.running_var"]).abs().max() > 1e-3  # it depends on the batching
    r = linear_path(a, TwoBN(1), (x, y), train_data=(x, y), alphas=3, batch_size=16)
    note = next(n for n in r.notes if n.startswith("BatchNorm running statistics"))
    assert "first BatchNorm layer of a path gets the statistics of one batch holding every example" in note
    assert "deeper layers see inputs normalised per batch" in note and "depend on batch_size" in note
    doc = D.bn_statistics.__doc__
    assert "one batch holding every" in doc and "normalised per batch" in doc and "depend on the batching" in doc


def F_bn_train(bn: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
    """BatchNorm in train mode on one batch (its own mean and biased variance), the layer's affine map."""
    return torch.nn.functional.batch_norm(h, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)


@pytest.mark.parametrize("batched", [True, False, "auto"])
def test_a_last_training_batch_of_one_example_is_joined_to_the_one_before(batched):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(257, 6, generator=g) * 3 + 1, torch.randint(0, 3, (257,), generator=g)
    a, b = TwoBN(0), TwoBN(1)
    # was torch's raw "Expected more than 1 value per channel when training" (128 + 128 + 1 examples)
    r = linear_path(a, b, (x, y), train_data=(x, y), alphas=3, batch_size=128, batched=batched)
    assert np.isfinite(r.curve.loss).all()
    assert [D.examples_of(c) for c in D.no_single_batches(D.batches((x, y), 128))] == [128, 129]
    assert [D.examples_of(c) for c in D.no_single_batches(D.batches((x[:3], y[:3]), 1))] == [3]
    st = D.bn_statistics(a, a.state_dict(), ["bn1", "bn2"], D.batches((x, y), 128), torch.device("cpu"))
    with torch.no_grad():
        h1 = a.lin1(x).double()
    torch.testing.assert_close(st["bn1.running_mean"].double(), h1.mean(0), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="train_data: .*cannot run on it.*more than 1 value per channel"):
        linear_path(a, b, (x, y), train_data=(x[:1], y[:1]), alphas=3, batched=batched)  # one example in all


class FailsOnSeven(nn.Module):
    """An MLP whose forward fails on a batch of 7 examples (the last batch of 40 in batches of 11)."""

    def __init__(self, seed=0):
        super().__init__()
        self.net = mlp(seed)

    def forward(self, x):
        if x.shape[-2] == 7:
            raise RuntimeError("boom on the last batch")
        return self.net(x)


@pytest.mark.parametrize("batched", [True, False, "auto"])
def test_data_the_model_cannot_take_is_a_value_error_naming_data(batched):
    x, y = data()
    a, b = mlp(0), mlp(1)
    for bad, first_line in [(torch.randn(40, 5), "mat1 and mat2 shapes cannot be multiplied"),
                            (x.double(), "mat1 and mat2 must have the same dtype")]:
        with pytest.raises(D.CannotRunError, match=rf"^data: Sequential cannot run on it \(RuntimeError: {first_line}"):
            linear_path(a, b, (bad, y), batched=batched)  # was the raw RuntimeError
        with pytest.raises(ValueError, match=rf"data\['test'\]: .*cannot run on it .*{first_line}"):
            linear_path(a, b, {"train": (x, y), "test": (bad, y)}, batched=batched)
    bn_a, bn_b = BNNet(0), BNNet(1)
    with pytest.raises(ValueError, match=r"train_data: BNNet cannot run on it \(RuntimeError: mat1 and mat2"):
        linear_path(bn_a, bn_b, (x, y), train_data=(torch.randn(40, 5), y), batched=batched)
    with pytest.raises(ValueError, match=r"batch: Sequential cannot run on it \(RuntimeError: mat1 and mat2"):
        P.path_outputs(a, b, torch.randn(8, 5), batched=batched is not False)
    # a failure on a later batch is not the data's shape: it propagates as it is, never swallowed
    with pytest.raises(RuntimeError, match="boom on the last batch") as err:
        linear_path(FailsOnSeven(0), FailsOnSeven(1), (x, y), batch_size=11, batched=batched)
    assert not isinstance(err.value, D.CannotRunError)


def _old_round_once(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """round_once as it was (nextafter on float32, 2026-12-06): the reference of the faster rounding."""
    if dtype in (torch.float64, torch.float32) or not x.is_floating_point():
        return x.to(dtype)
    y = x.float()
    inexact = y.double() != x
    even = (y.view(torch.int32) & 1) == 0
    toward = torch.where(x > y.double(), torch.full_like(y, float("inf")), torch.full_like(y, float("-inf")))
    return torch.where(inexact & even, torch.nextafter(y, toward), y).to(dtype)


def _old_rows(ta: torch.Tensor, tb: torch.Tensor, al) -> torch.Tensor:
    """lerp_rows' values as they were: torch.lerp of the whole tensors in float64, rounded once; the ends exact."""
    return torch.stack([ta if w == 0.0 else tb if w == 1.0 else
                        _old_round_once(torch.lerp(ta.double(), tb.double(), w), ta.dtype) for w in al])


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def _same(x: torch.Tensor, y: torch.Tensor) -> bool:
    """x and y bit for bit (-0.0 is not 0.0), a NaN equal to any NaN (its sign and payload are not a value)."""
    return x.shape == y.shape and bool(((_bits(x) == _bits(y)) | (torch.isnan(x) & torch.isnan(y))).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_the_faster_interpolation_has_the_old_values_bit_for_bit(dtype, monkeypatch):
    g = torch.Generator().manual_seed(11)
    al = [0.0, 1e-9, 0.1, 0.3, 1 / 3, 0.37, 0.5, 0.77, 0.9, 0.999999, 1.0]
    n = 3001
    ta, tb = (torch.randn(n, generator=g, dtype=torch.float64) * 4).to(dtype), torch.randn(n, generator=g).to(dtype)
    edge = torch.tensor([0.0, -0.0, 1e-40, -3e-39, 65504.0, 3e38, -2.5e-8, 1.0 + 2 ** -8])
    ta[: edge.numel()], tb[: edge.numel()] = edge.to(dtype), torch.tensor(
        [-0.0, -0.0, 2e-40, 1e-45, 60000.0, 3.3e38, 3e-8, 1.0]).to(dtype)
    want = _old_rows(ta, tb, al)
    x = torch.randn(20000, generator=g, dtype=torch.float64) * torch.logspace(-42, 38, 20000, dtype=torch.float64)
    assert _same(I.round_once(x, dtype), _old_round_once(x, dtype))
    for mix in (I.MIX_BYTES, 64):  # 64: blocks of 8 elements, cutting the tensor anywhere
        monkeypatch.setattr(I, "MIX_BYTES", mix)
        assert _same(I.lerp_rows(ta, tb, al), want), mix
        parts = {"a": ta[:1000].view(10, 100), "b": ta[1000:], "c": ta[5:6].view(())}
        other = {"a": tb[:1000].view(10, 100), "b": tb[1000:], "c": tb[5:6].view(())}
        got = I.stacked_mix(parts, other, al)
        assert all(_same(got[k].reshape(len(al), -1), _old_rows(parts[k].reshape(-1), other[k].reshape(-1), al))
                   for k in parts)
        for flat_bytes in (1 << 30, 0):
            out = {k: torch.empty_like(t) for k, t in parts.items()}
            write = I.weight_writer(parts, other, out, al, flat_bytes)
            for i in range(len(al)):
                write(i)
                assert all(_same(out[k].reshape(-1), got[k][i].reshape(-1)) for k in parts), i


def test_the_interpolation_blocks_are_per_device_and_their_scratch_is_reused(monkeypatch):
    cpu, gpu = I.block_elements(torch.device("cpu")), I.block_elements(torch.device("cuda"))
    assert cpu == I.MIX_BYTES // 8 >= 1 << 16 and gpu == I.MIX_BYTES_GPU // 8 >= 1 << 22  # large on a GPU
    assert I.block_elements("cpu", torch.complex128) == cpu // 2
    made = []

    class Counting(I.Scratch):
        def get(self, role, dtype, device, n):
            before = self._bufs.get((role, dtype, device))
            t = super().get(role, dtype, device, n)
            if self._bufs[role, dtype, device] is not before:
                made.append(role)
            return t

    monkeypatch.setattr(I, "Scratch", Counting)
    monkeypatch.setattr(I, "MIX_BYTES", 4096)  # 512 elements a block: many blocks per tensor
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        a = {"w": torch.randn(5000, generator=g).to(dtype), "v": torch.randn(700, generator=g).to(dtype)}
        b = {k: torch.randn(t.shape, generator=g).to(dtype) for k, t in a.items()}
        out = {k: torch.empty_like(t) for k, t in a.items()}
        write = I.weight_writer(a, b, out, np.linspace(0, 1, 7), 0)
        made.clear()
        write(1)
        first = len(made)
        for i in range(2, 6):
            write(i)
        assert first > 0 and len(made) == first  # allocated at the first alpha only, reused at every later one
        made.clear()
        I.stacked_mix(a, b, np.linspace(0, 1, 7))
        assert len(made) == len(set(made))  # one allocation per role for all tensors, blocks and alphas


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_interpolated_weights_are_within_an_ulp_of_the_exact_value(dtype):
    from fractions import Fraction

    g = torch.Generator().manual_seed(2)
    ta, tb = (torch.randn(400, generator=g) * 4).to(dtype), (torch.randn(400, generator=g) * 4).to(dtype)
    for w in (0.1, 0.3, 0.7):
        got = I.lerp_rows(ta, tb, [w])[0]
        up = (_bits(got) + 1).view(dtype)
        down = (_bits(got) - 1).view(dtype)
        for k in range(ta.numel()):
            exact = (1 - Fraction(w)) * Fraction(ta[k].item()) + Fraction(w) * Fraction(tb[k].item())
            ulp = max(abs(Fraction(up[k].item()) - Fraction(got[k].item())),
                      abs(Fraction(got[k].item()) - Fraction(down[k].item())))
            assert abs(Fraction(got[k].item()) - exact) <= ulp
    for f in (I.lerp_rows, I.stacked_mix, I.weight_writer, I.lerp_exact, I.interpolate_states):
        doc = " ".join(f.__doc__.split())
        assert "correctly rounded" not in doc and "within an ulp of the exact value" in doc, f.__name__
    assert "correctly rounded" not in I.__doc__


def test_barrier_matrix_checks_its_alphas_as_linear_path_before_any_evaluation(monkeypatch):
    from lmc_core import MLPConfig, family_of
    from lmc_core.analysis import landscape as L
    from lmc_core.data.batches import Examples

    cfg = MLPConfig(d_in=6, hidden=(8,), n_classes=3)
    fam = family_of(cfg)
    state = fam.init(cfg, [1, 2, 3])
    ex = fam.eval_examples(cfg, Examples(x=data()[0], y=data()[1]))
    calls = []
    real = L._evaluate
    monkeypatch.setattr(L, "_evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    for alphas in (np.linspace(0, 1, B.MAX_ALPHAS + 1), [1e-12, 0.5, 1.0], [0.0, 0.5, 1.0 - 1e-12], 1002, "5"):
        with pytest.raises(ValueError, match="alphas"):  # 1,002 points failed inside interpolate_states, late
            L.barrier_matrix(cfg, state, ex, alphas)
    assert not calls
    m = L.barrier_matrix(cfg, state, ex, 4)  # a number of points, as linear_path
    assert m.shape == (3, 3) and calls


@pytest.mark.parametrize("kw, ok", [(dict(alphas=np.array(5)), True), (dict(alphas=np.array(5.0)), False),
                                    (dict(batched=1), False), (dict(batched=0), False),
                                    (dict(batched=np.int64(1)), False), (dict(batched=1.0), False),
                                    (dict(batched=np.bool_(False)), True), (dict(memory_mb=10 ** 30), False),
                                    (dict(memory_mb=I.MAX_MEMORY_MB + 1), False),
                                    (dict(memory_mb=I.MAX_MEMORY_MB), True)])
def test_minor_domains_zero_d_alphas_exact_batched_and_bounded_memory(kw, ok):
    a, b = Counting(0), Counting(1)
    if ok:
        r = linear_path(a, b, data(), **kw)
        assert len(r.curve) == (5 if "alphas" in kw else 11)
        return
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        linear_path(a, b, data(), **kw)
    if name != "memory_mb":
        with pytest.raises(ValueError, match=name):
            P.path_outputs(a, b, data()[0], **kw)
    assert a.calls == b.calls == 0
