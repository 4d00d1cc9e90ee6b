"""A result's figures and tables: a part a switch left out reads as a note, a typo stays a KeyError."""
import pytest

from lmc_core.studies.base import Omitted, Shown


def test_an_omitted_part_reads_as_a_note_naming_the_switch():
    figs = Shown({"04_width": "fig"}, omitted={"04_lm_floor": "run_lm = False turns the transformer part off"})
    note = figs["04_lm_floor"]
    assert isinstance(note, Omitted) and "run_lm = False" in note._repr_markdown_() and "04_lm_floor" in repr(note)
    assert "04_lm_floor" not in figs and list(figs) == ["04_width"]  # the mapping itself holds what was made
    assert figs.get("04_lm_floor") is None  # .get keeps dict's meaning


def test_a_name_neither_made_nor_omitted_is_a_key_error_listing_the_names():
    figs = Shown({"04_width": "fig"}, omitted={"04_lm_floor": "run_lm = False"})
    with pytest.raises(KeyError, match="04_width"):
        figs["04_widht"]
