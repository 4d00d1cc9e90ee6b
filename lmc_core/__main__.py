"""Command line: ``python -m lmc_core <command> ...`` (``python -m lmc_core -h`` lists commands).

To add a command, write ``configure(parser)`` and ``run(args) -> int`` functions and
decorate ``run`` with ``@command("name", "one-line help", configure)``.  Inside ``run``,
raise ``UsageError`` for bad input: it becomes exit code 2 with the message.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from lmc_core.publish.paths import PROFILES


class UsageError(Exception):
    """Bad command-line input; reported with exit code 2."""


def check_dir_option(value: Path | None, option: str, writable: bool = True) -> Path | None:
    """A folder option (``--store-dir`` ...) as given, checked before any work: UsageError naming the option if it
    is (under) a file, or not writable (unless writable=False: a run store of finished runs can be read-only)."""
    from lmc_core.config import ConfigError
    from lmc_core.publish.outputs import check_output_dir

    if value is None:
        return None
    try:
        check_output_dir(value, option, writable=writable)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    return value


@dataclass(frozen=True)
class Command:
    """One subcommand: help text, argument setup and handler."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(
    name: str, help: str, configure: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register the decorated ``run(args) -> int`` function as subcommand ``name``."""

    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(help=help, configure=configure or (lambda p: None), run=run)
        return run

    return register


def profile_arg(value: str) -> str:
    """argparse type for --profile: one of PROFILES."""
    if value not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"unknown profile {value!r}; use one of: {', '.join(PROFILES)}"
        )
    return value


# --------------------------------------------------------------------------- figures
def _configure_figures(p: argparse.ArgumentParser) -> None:
    """Arguments of ``figures``."""
    p.add_argument("--profile", type=profile_arg, default="quick",
                   metavar="{" + ",".join(PROFILES) + "}",
                   help="run size (default: quick)")
    p.add_argument("--notebooks", nargs="+", metavar="NB",
                   help="only these notebooks, by number prefix (01) or file stem (01_instability_at_init)")
    p.add_argument("--figures-dir", type=Path, metavar="D",
                   help="where notebooks save figures (default: figures/<profile>)")
    p.add_argument("--reports-dir", type=Path, metavar="D",
                   help="where executed notebooks, HTML and index.html go "
                        "(default: reports/<profile>)")
    p.add_argument("--store-dir", type=Path, metavar="D",
                   help="where trained runs are stored (default: runs/)")
    p.add_argument("--no-progress", action="store_true",
                   help="do not stream notebook output (training progress) to the terminal")
    p.add_argument("--cap-steps", type=int, metavar="N",
                   help="a capped run: every training run stops after N updates (then jumps to its end), evaluation "
                        "on small samples; proves the profile runs at its real sizes and prints its projected cost; "
                        "written to figures/<profile>-capped and reports/<profile>-capped, never a result")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="notebooks run at once (default 1; each trains with one thread, so the number of cores "
                        "uses them all; output is then not streamed)")


@command("figures", "run the numbered notebooks headless; write figures and HTML reports",
         _configure_figures)
def _run_figures(args: argparse.Namespace) -> int:
    """Execute the notebooks and print the index path."""
    from lmc_core.publish.reports import NotebookRunError, run_notebooks

    check_dir_option(args.figures_dir, "--figures-dir")
    check_dir_option(args.reports_dir, "--reports-dir")
    check_dir_option(args.store_dir, "--store-dir", writable=False)
    if args.profile == "paper" and args.cap_steps is None:  # say what it will cost before it starts
        from .publish.costs import projection_lines
        from .publish.reports import repo_root

        print("\n".join(projection_lines(repo_root(), args.notebooks)), flush=True)
    try:
        written = run_notebooks(
            args.profile,
            notebooks=args.notebooks,
            figures_dir=args.figures_dir,
            reports_dir=args.reports_dir,
            store_dir=args.store_dir,
            progress=not args.no_progress,
            jobs=args.jobs,
            cap_steps=args.cap_steps,
        )
    except NotebookRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(exc.index)
        return 1
    except ValueError as exc:  # input validation (unknown notebook, no notebooks, ...)
        raise UsageError(str(exc)) from exc
    print(written[-1])
    return 0


# --------------------------------------------------------------------------- costs
def _configure_costs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", type=profile_arg, default="paper", metavar="{" + ",".join(PROFILES) + "}",
                   help="whose capped runs to collect (default: paper)")
    p.add_argument("--figures-dir", type=Path, metavar="D",
                   help="the capped runs' figures folder (default: figures/<profile>-capped)")


@command("costs", "collect the projected costs of capped runs into docs/paper_costs.json and the README's profile "
         "table", _configure_costs)
def _run_costs(args: argparse.Namespace) -> int:
    """Merge figures/<profile>-capped's projections into docs/paper_costs.json and the README."""
    from .publish.costs import write_costs
    from .publish.paths import resolve
    from .publish.reports import repo_root

    folder = resolve(args.figures_dir, Path("figures") / f"{args.profile}-capped")
    if not folder.is_dir():
        raise UsageError(f"--figures-dir {folder.name}: no such folder; run python -m lmc_core figures --profile "
                         f"{args.profile} --cap-steps 2 first")
    done = write_costs(repo_root(), folder)
    print(f"docs/paper_costs.json and README.md: projections of notebook(s) {', '.join(done) or 'none'}")
    return 0


# --------------------------------------------------------------------------- compare
def _configure_compare(p: argparse.ArgumentParser) -> None:
    """Arguments of ``compare``."""
    p.add_argument("a", type=Path, metavar="FIGURES_A", help="a figures folder (e.g. figures/quick as committed)")
    p.add_argument("b", type=Path, metavar="FIGURES_B", help="another build's figures folder (e.g. a rebuild's)")


@command("compare", "compare two builds' summaries finding by finding: which verdicts differ (exit 1 if any)",
         _configure_compare)
def _run_compare(args: argparse.Namespace) -> int:
    """Print the comparison; 0 when every verdict is the same, 1 when one differs (as diff does)."""
    from .publish.compare import compare, report

    try:
        pairs, machines = compare(args.a, args.b)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(report(pairs, machines), end="")
    return 0 if all(p.same for p in pairs) else 1


# --------------------------------------------------------------------------- profiles
@command("profiles", "list the run profiles and what each is for")
def _run_profiles(args: argparse.Namespace) -> int:
    """Print one profile per line: its name and what it is for."""
    from lmc_core.publish.paths import PROFILE_NOTES

    for name in PROFILES:
        print(f"{name:<7} {PROFILE_NOTES[name]}")
    print("Each notebook's settings per profile: README.md, section Profiles.")
    return 0


# --------------------------------------------------------------------------- bench
def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default="ensemble", help="benchmark script under bench/ (default: ensemble)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (see its --help)")


@command("bench", "run a benchmark script from bench/ (e.g. `bench ensemble --ks 1 8`)", _configure_bench)
def _run_bench(args: argparse.Namespace) -> int:
    """Run bench/<name>.py with the remaining arguments."""
    import runpy

    from .publish.reports import repo_root

    script = repo_root() / "bench" / f"{args.name}.py"
    if not script.exists():
        have = sorted(p.stem for p in script.parent.glob("*.py"))
        raise UsageError(f"no benchmark {args.name!r}; available: {have}")
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


# --------------------------------------------------------------------------- readme
def _configure_readme(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", type=profile_arg, default="quick", metavar="{" + ",".join(PROFILES) + "}",
                   help="whose summaries to quote (default: quick)")


@command("readme", "quote each notebook's summary (figures/<profile>/NN_summary.md) in README.md",
         _configure_readme)
def _run_readme(args: argparse.Namespace) -> int:
    """Refresh the README's result blocks from the studies' summaries."""
    from .publish.readme import update_readme
    from .publish.reports import repo_root

    changed = update_readme(repo_root(), args.profile)
    print("README.md: " + (f"updated {', '.join(changed)}" if changed else "up to date"))
    return 0


# --------------------------------------------------------------------------- params
def _configure_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="only say whether docs/parameters.md is current (exit 1 if not)")


@command("params", "refresh docs/parameters.md's tables of every study parameter and its domain", _configure_params)
def _run_params(args: argparse.Namespace) -> int:
    """Rewrite (or, with --check, compare) the generated block of docs/parameters.md."""
    from .publish import params_doc
    from .studies.params import StudyParams
    from .studies.registry import MODULES, studies

    package = studies()[: len(MODULES)]
    if args.check:
        current = params_doc.current_block() == params_doc.study_tables(package, StudyParams)
        print(f"{params_doc.DOC}: {'current' if current else 'stale: run python -m lmc_core params'}")
        return 0 if current else 1
    changed = params_doc.refresh(package, StudyParams)
    print(f"{params_doc.DOC}: {'refreshed' if changed else 'already current'}")
    return 0


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="python -m lmc_core", description="lmc_core command line (notebook runs, reports)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"error: give a command, one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    from lmc_core.config import ConfigError
    from lmc_core.files import StoreAccessError

    try:
        return COMMANDS[args.command].run(args)
    except (UsageError, ConfigError) as exc:  # bad input, named by the check that found it
        args._parser.print_usage(sys.stderr)
        print(f"{args._parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except (StoreAccessError, PermissionError, FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        # a folder or file the command needs is in the way or not writable: no traceback, the path named
        print(f"{args._parser.prog}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
