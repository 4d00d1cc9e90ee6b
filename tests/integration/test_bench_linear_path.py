"""bench/linear_path.py runs end to end on a tiny model (its ways agree before any time is printed), and its --mix
part prints the three writers and loss-landscapes' last point against model B: when the path API changes, this
fails here instead of the benchmark failing when someone next measures."""
import importlib.util
from pathlib import Path

import pytest


def test_the_linear_path_benchmark_runs_and_reports_the_mixing_and_its_exactness(capsys):
    pytest.importorskip("loss_landscapes")
    path = Path(__file__).resolve().parents[2] / "bench" / "linear_path.py"
    spec = importlib.util.spec_from_file_location("bench_linear_path", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--width", "8", "--examples", "32", "--batch-size", "32", "--alphas", "5", "--repeats", "1",
                "--calls", "1", "--mix", "--device", "cpu"])
    out = capsys.readouterr().out
    for line in ("lmc_core, packed (float64, exact)", "lmc_core, tensor by tensor", "loss-landscapes, float32 add_",
                 "lmc_core vs loss-landscapes:", "page faults/call"):
        assert line in out, line
    differ, total, _ = bench.accumulated_end(bench.mlp(0, 40, 8, "cpu"), bench.mlp(1, 40, 8, "cpu"), 5)
    assert total == 40 * 8 + 8 + 2 * (8 * 8 + 8) + 8 * 10 + 10 and 0 < differ <= total
