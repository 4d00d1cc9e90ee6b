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
    plan = P._Plan(a, b, "interpolate", None, [])
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
