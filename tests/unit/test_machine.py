"""The machine that trains a run and writes a summary is recorded (lmc_core.machine): float32 kernels differ between
CPUs, so a verdict near its threshold can differ between two machines' builds."""
import json

import torch

from conftest import tiny_spec
from lmc_core import machine
from lmc_core.config import Seeds
from lmc_core.runs.layout import DONE
from lmc_core.runs.store import RunStore


def test_a_stored_run_records_the_machine_that_trained_it_and_reading_it_notes_that_machine(stream, tmp_path):
    spec = tiny_spec([Seeds(0, 1, 2)], steps=3)
    store = RunStore(tmp_path)
    machine.TRAINED_ON.clear()
    store.get(spec, stream, "cpu", progress=False)
    done = json.loads((store.path(spec) / DONE).read_text())
    assert done["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert done["machine"]["torch"] == torch.__version__
    here = machine.words(machine.machine())
    assert machine.trained_on() == [here]
    # a run stored elsewhere, and one stored before machines were recorded, are noted as what they say
    done["machine"] = {**done["machine"], "cpu": "Another CPU", "cpu_capability": "AVX2"}
    (store.path(spec) / DONE).write_text(json.dumps(done))
    machine.TRAINED_ON.clear()
    RunStore(tmp_path).get(spec, stream, "cpu", progress=False)
    assert len(machine.trained_on()) == 1 and machine.trained_on()[0].startswith("Another CPU (AVX2)")
    del done["machine"]
    (store.path(spec) / DONE).write_text(json.dumps(done))
    machine.TRAINED_ON.clear()
    RunStore(tmp_path).get(spec, stream, "cpu", progress=False)
    assert machine.trained_on() == ["not recorded"]


def test_words_of_an_empty_record_are_empty_and_of_a_gpu_name_it():
    assert machine.words({}) == ""
    m = {"cpu": "C", "cpu_capability": "AVX512", "threads": 1, "torch": "2.13.0", "gpu": "NVIDIA H100"}
    assert machine.words(m) == "NVIDIA H100; C (AVX512), 1 torch thread(s), torch 2.13.0"
