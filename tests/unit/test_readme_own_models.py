"""The README's shortest example for your own models runs as written and stays short."""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Use it on your own models", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_shortest_example_is_at_most_ten_lines_of_user_code():
    code = [ln for ln in example().splitlines() if ln.strip() and not ln.startswith(("import ", "from "))]
    assert len(code) <= 10, code


def test_the_shortest_example_runs_and_reports_barriers_before_and_after_matching(capsys):
    torch.set_num_threads(1)
    scope: dict = {}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        exec(compile(example(), str(README), "exec"), scope)  # noqa: S102 - the README's own code
    before, after = scope["before"], scope["after"]
    assert math.isfinite(before.barrier()) and math.isfinite(after.barrier())
    assert set(before.barriers.definition) == {"mean", "chord", "subchord", "midpoint"}
    assert scope["aligned"].check.ok
    out = capsys.readouterr().out
    assert "->" in out and "barrier `mean`" in out
