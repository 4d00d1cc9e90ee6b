"""Study parameters: bad input stops early with a message that says what to change."""
import pytest

from lmc_core.config import ConfigError
from lmc_core.data import DataUnavailableError
from lmc_core.studies import instability_init as study


def run(tmp_path, **kw):
    return study.run({"profile": "smoke", "figures_dir": str(tmp_path / "f"), "store_dir": str(tmp_path / "s"),
                      "progress": False, **kw})


@pytest.mark.parametrize("kw, err, match", [
    ({"profile": "huge"}, ConfigError, "smoke"),
    ({"model": "resnet"}, ConfigError, "ptb-transformer"),
    ({"steps": -5}, ConfigError, "steps"),
    ({"pairs": 0}, ConfigError, "pairs"),
    ({"definition": "area"}, ValueError, "subchord"),
    ({"stepz": 3}, ConfigError, "valid parameters"),
    ({"corpus": "wikitext"}, ValueError, "shakespeare"),
    ({"corpus": "ptb", "data_path": "no/such/folder"}, DataUnavailableError, "no/such/folder"),
    ({"device": "cuda:7"} , ValueError, "cpu"),
])
def test_bad_parameters(tmp_path, kw, err, match):
    if kw.get("device") and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(err, match=match):
        run(tmp_path, **kw)
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
