"""Two builds compared finding by finding (lmc_core.publish.compare, `python -m lmc_core compare`)."""
import json
import shutil

from lmc_core.__main__ import main
from lmc_core.publish.compare import compare, report
from lmc_core.publish.paths import repo_root

MACHINE = {"cpu": "Some CPU", "cpu_capability": "AVX2", "threads": 1, "torch": "2.13.0+cpu"}


def finding(question, verdict, estimate, metric="m"):
    return {"question": question, "metric": metric, "verdict": verdict, "estimate": estimate}


def write(folder, prefix, findings, headline=0, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    d = {"findings": findings, "headline_finding": findings[headline], **extra}
    (folder / f"{prefix}_summary.json").write_text(json.dumps(d))


def test_a_flipped_verdict_is_found_with_both_estimates_and_machines(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "01", [finding("q1", "unstable", 2.6), finding("q2", "higher", 1.1), finding("q2", "", 0.5)],
          machine=MACHINE)
    write(b, "01", [finding("q1", "inconclusive", 1.9), finding("q2", "higher", 1.0), finding("q2", "", 0.4),
                    finding("q3", "lower", -1.0)])
    write(a, "02", [finding("q", "stable", 1.0)])  # only in A: not compared
    pairs, machines = compare(a, b)
    assert [p.notebook for p in pairs] == ["01"] * 4
    flips = [p for p in pairs if not p.same]
    assert [(p.question, p.verdict_a, p.verdict_b, p.headline) for p in flips] == [
        ("q1", "unstable", "inconclusive", True), ("q3", None, "lower", False)]
    assert machines["01"] == ("Some CPU (AVX2), 1 torch thread(s), torch 2.13.0+cpu", "not recorded")
    text = report(pairs, machines)
    assert "2 of 4 verdicts the same; 2 differ" in text and "**headline** q1 (m) | unstable | inconclusive" in text
    assert "absent | lower" in text


def test_the_command_exits_1_on_a_difference_0_on_none_and_2_on_a_missing_folder(tmp_path, capsys):
    fig = repo_root() / "figures" / "quick"
    same = tmp_path / "same"
    shutil.copytree(fig, same, ignore=shutil.ignore_patterns("*.png", "*.pdf", "*.csv"))
    assert main(["compare", str(fig), str(same)]) == 0
    assert "differ." in capsys.readouterr().out
    d = json.loads((same / "01_summary.json").read_text())
    d["headline_finding"] = d["findings"][0] = {**d["findings"][0], "verdict": "flipped"}
    (same / "01_summary.json").write_text(json.dumps(d))
    assert main(["compare", str(fig), str(same)]) == 1
    assert "| flipped |" in capsys.readouterr().out
    assert main(["compare", str(fig), str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such figures folder" in capsys.readouterr().err


def test_a_headline_a_kept_rebuild_does_not_share_is_not_a_finding_in_the_readme_table(tmp_path):
    from lmc_core.publish.compare import flipped_headlines, rebuild_lines, rebuilt
    from lmc_core.publish.readme import findings_table

    fig = tmp_path / "quick"
    head = {**finding("q1", "unstable", 2.8), "unit": "percentage points", "n_units": 5, "unit_name": "initialisation"}
    write(fig, "01", [head, finding("q2", "higher", 1.1)], machine=MACHINE, question="Q?", claim="C", setting="S")
    write(fig / "rebuilds" / "other-cpu", "01", [{**head, "verdict": "inconclusive", "estimate": 2.6},
                                                  finding("q2", "higher", 1.0)], setting="S")
    assert flipped_headlines(rebuilt(fig)) == {"01": "unstable here (2.80), inconclusive in the kept build `other-cpu` (2.60)"}
    assert "1 of 2 verdicts the same; differ: 01 q1 (m): unstable here, inconclusive there." in rebuild_lines(rebuilt(fig))
    table = findings_table(fig)
    assert "**not a finding** (unstable here (2.80), inconclusive in the kept build `other-cpu` (2.60))" in table
    assert "**unstable**" not in table and "01 on Some CPU (AVX2)" in table
    (fig / "rebuilds" / "other-cpu" / "01_summary.json").unlink()  # no rebuild kept: the verdict stands
    assert flipped_headlines(rebuilt(fig)) == {} and "**unstable**" in findings_table(fig)


def test_a_finding_missing_in_one_build_never_shifts_the_pairing_of_the_others(tmp_path):
    """Questions that differ only by design numbers (T = 3000, T = 1500) blank to the same key: with one of them
    missing in B, the other is not paired with A's by order (the referee's case), both are reported unpaired."""
    a, b = tmp_path / "a", tmp_path / "b"
    t3000 = finding("barrier, T = 3000 (5 inits)", "unstable", 2.8)
    t1500 = finding("barrier, T = 1500 (5 inits)", "", 1.7)
    write(a, "01", [t3000, t1500])
    write(b, "01", [{**t1500, "question": "barrier, T = 1500 (4 inits)"}])
    pairs, _ = compare(a, b)
    assert [(p.verdict_a, p.verdict_b) for p in pairs] == [("unstable", None), ("", None), (None, "")]
    assert next(p for p in pairs if p.verdict_a == "unstable").headline


def test_measured_numbers_and_infinities_in_a_question_still_pair_the_same_finding(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "06", [finding("sooner? (wd 1 − wd 0) (grok step 800 [325–825] vs 975 [575–1650])", "lower", -175),
                    finding("sooner? (wd 1 − wd 0.5) (grok step 800 [325–825] vs 900 [500–1000])", "", -100)])
    write(b, "06", [finding("sooner? (wd 1 − wd 0) (grok step 810 [330–830] vs ∞ [1900–∞])", "inconclusive", 0),
                    finding("sooner? (wd 1 − wd 0.5) (grok step 810 [330–830] vs 905 [500–1000])", "", -95)])
    pairs, machines = compare(a, b)
    assert [(p.verdict_a, p.verdict_b) for p in pairs] == [("lower", "inconclusive"), ("", "")]
    assert "[B: sooner? (wd 1 − wd 0) (grok step 810" in report(pairs, machines)


def test_a_kept_build_of_another_design_is_named_not_compared(tmp_path):
    """A notebook the kept build ran with another setting (6 initialisations against 5) answers other runs: its
    verdicts are neither paired nor able to make the committed headline 'not a finding'."""
    from lmc_core.publish.compare import flipped_headlines, other_designs, rebuild_lines, rebuilt

    fig = tmp_path / "quick"
    write(fig, "01", [finding("q1", "unstable", 2.8)], setting="6 initialisations")
    write(fig, "02", [finding("k", "bracketed", 50)], setting="5 parents")
    write(fig / "rebuilds" / "old", "01", [finding("q1", "inconclusive", 2.6)], setting="5 initialisations")
    write(fig / "rebuilds" / "old", "02", [finding("k", "bracketed", 50)], setting="5 parents")
    assert other_designs(fig, fig / "rebuilds" / "old") == ["01"]
    kept = rebuilt(fig)
    assert [p.notebook for p in kept[0][1]] == ["02"] and kept[0][2] == ["01"]
    assert flipped_headlines(kept) == {}
    assert "1 of 1 verdicts the same. Not compared: notebook 01, run there in another design" in rebuild_lines(kept)
    assert [p.verdict_b for p in compare(fig, fig / "rebuilds" / "old")[0]] == ["inconclusive", "bracketed"]
