"""Where the project's folders live, wherever a kernel starts.

`home()` is `$LMC_HOME` if set, else the checkout holding this package (an editable install:
the folder with notebooks/ and pyproject.toml), else the current directory. runs/, figures/,
data/cache/ and reports/ are resolved against it, and so is every relative path a user gives
(store_dir, figures_dir, cache_dir, data_path): a notebook opened in JupyterLab (kernel in
notebooks/), run by papermill or from the command line finds the same stored runs.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "LMC_HOME"
PROFILES: tuple[str, ...] = ("smoke", "quick", "paper")
PROFILE_NOTES = {  # what each profile is for (the README's Profiles section gives each notebook's settings)
    "smoke": "seconds per notebook on a 2-core CPU: checks that everything runs (the tests use it); no findings",
    "quick": "the default: minutes per notebook on a 2-core CPU, the findings already visible (figures/quick)",
    "paper": "the studies' own scale: hours, meant for one GPU (or a cluster for the grids)",
}


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of PROFILES, else raise ValueError naming the valid ones."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles are: {', '.join(PROFILES)}")
    return profile


def checkout_root() -> Path | None:
    """The source checkout this package was imported from (editable install), or None."""
    here = Path(__file__).resolve().parents[2]  # lmc_core/publish/paths.py -> checkout
    if (here / "notebooks").is_dir() and (here / "pyproject.toml").is_file():
        return here
    return None


def home() -> Path:
    """The project's home folder ($LMC_HOME, else the checkout, else the current directory)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser().resolve()
    return checkout_root() or Path.cwd().resolve()


def resolve(path: str | os.PathLike | None, default: str | os.PathLike) -> Path:
    """`path` (or `default` when None) as an absolute path; relative paths are taken from home()."""
    p = Path(default if path is None else path).expanduser()
    return p if p.is_absolute() else home() / p


def shown(path: str | os.PathLike) -> str:
    """A path for messages and reports: relative to home() when inside it (no machine paths)."""
    p = Path(path)
    try:
        return p.resolve().relative_to(home()).as_posix()
    except ValueError:
        return str(p)


def repo_root() -> Path:
    """The checkout holding ``notebooks/`` next to this package (editable install), else the current directory."""
    return checkout_root() or Path.cwd()


def runs_table(runs: list[dict]):
    """A list of run records as a DataFrame, their store folders relative to the project home (no machine paths)."""
    import pandas as pd

    t = pd.DataFrame(runs)
    if "store" in t:
        t["store"] = t["store"].map(shown)
    return t
