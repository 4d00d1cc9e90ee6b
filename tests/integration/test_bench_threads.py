"""bench/threads.py builds the quick profiles' specs from the studies' own code: when a study's API changes, this
fails here instead of the benchmark failing when someone next measures (it had, after notebook 01's rewrite)."""
import importlib.util
from pathlib import Path

import torch


def test_the_thread_benchmark_builds_and_steps_every_quick_model():
    path = Path(__file__).resolve().parents[2] / "bench" / "threads.py"
    spec = importlib.util.spec_from_file_location("bench_threads", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = torch.get_num_threads()
    try:
        models = bench.models()
        assert len(models) == 3
        for name, (run_spec, data) in models.items():
            assert bench.steps_per_s(run_spec, data, 1, 1) > 0, name
    finally:
        torch.set_num_threads(before)
