"""The one duration parser and formatter (pageref.analysis.fmt), and every
command that takes or shows a duration going through them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from pageref.analysis.fmt import fmt_ns, fmt_seconds, parse_duration, parse_seconds
from pageref.cli import cli

S = 1_000_000_000


@pytest.mark.parametrize("text,ns", [
    ("10ns", 10), ("250us", 250_000), ("250µs", 250_000), ("250μs", 250_000),
    ("500ms", 500_000_000), ("1.5s", 3 * S // 2), ("2m", 120 * S), ("2min", 120 * S),
    ("1.5min", 90 * S), ("1h", 3600 * S), ("0.5h", 1800 * S), ("7", 7 * S), ("0.25", S // 4),
    (" 3 s ", 3 * S), ("1e3ms", S), ("0", 0),
])
def test_parse_duration_units(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", "-1s", "1 2", "abc", "5x", "1hr", "1d", "inf",
                                  "nan", "1e40s", "1S"])
def test_parse_duration_rejects_with_one_line(text):
    with pytest.raises(ValueError) as e:
        parse_duration(text)
    msg = str(e.value)
    assert "\n" not in msg and repr(text) in msg


def test_parse_duration_positive_refuses_zero():
    assert parse_duration("0") == 0
    with pytest.raises(ValueError, match="more than 0"):
        parse_duration("0s", positive=True)
    assert parse_duration("1ns", positive=True) == 1


def test_parse_seconds_is_the_same_parser():
    assert parse_seconds("250us") == 0.00025 and parse_seconds("1h") == 3600.0
    with pytest.raises(ValueError):
        parse_seconds("soon")


@pytest.mark.parametrize("ns,text", [
    (10, "10 ns"), (999, "999 ns"), (1_000, "1.0 µs"), (250_000, "250.0 µs"),
    (1_500_000, "1.5 ms"), (S, "1.00 s"), (1_500_000_000, "1.50 s"), (59 * S, "59.00 s"),
    (60 * S, "1.0 min"), (90 * S, "1.5 min"), (None, "?"), (float("nan"), "?"),
])
def test_fmt_ns(ns, text):
    assert fmt_ns(ns) == text


def test_fmt_seconds_is_fmt_ns():
    assert fmt_seconds(90.0) == fmt_ns(90 * S) == "1.5 min"
    assert fmt_seconds(0.0123) == "12.3 ms" and fmt_seconds(None) == "?"


def test_formatted_durations_parse_back():
    """What the formatter prints, a user can type back (within its rounding)."""
    for ns in (10, 250_000, 1_500_000, 1_500_000_000, 90 * S):
        text = fmt_ns(ns).replace(" ", "")
        assert parse_duration(text) == pytest.approx(ns, rel=0.01)


@pytest.mark.parametrize("args", [
    ["analyze", "examples/basic.jsonl", "--threshold", "soon"],
    ["history", "examples/basic.jsonl", "--pfn", "0x1", "--threshold", "5x"],
    ["report", "examples/basic.jsonl", "--threshold", "1e40s"],
    ["record", "-o", "never-written.trace", "--duration", "0"],
    ["record", "-o", "never-written.trace", "--duration", "1d"],
])
def test_bad_duration_on_every_command_is_one_line(args):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "duration" in errors[0], r.output
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)


def test_commands_accept_the_same_units(tmp_path):
    """A threshold in hours or microseconds is accepted by analyze (it was refused
    in hours) and shown back with the one formatter."""
    r = CliRunner().invoke(cli, ["analyze", "examples/basic.jsonl", "-t", "2h"])
    assert r.exit_code in (0, 1), r.output
    assert "threshold 120.0 min" in r.output
    r = CliRunner().invoke(cli, ["analyze", "examples/basic.jsonl", "-t", "250us"])
    assert "threshold 250.0 µs" in r.output
