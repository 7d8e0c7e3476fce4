"""The user-facing page-kind names (trace/pgmap_names.py)."""

from pageref.trace.pgmap_names import display_name
from pageref.trace.schema import PGMAP_TYPES


def test_generic_is_shown_as_devdax():
    assert display_name("generic") == "devdax"


def test_other_types_keep_their_name_and_none_is_a_dash():
    for t in PGMAP_TYPES:
        if t != "generic":
            assert display_name(t) == t
    assert display_name(None) == "-"
