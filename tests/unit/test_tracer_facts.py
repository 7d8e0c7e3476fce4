"""Integer expressions read from kernel header text (tracer/facts.py): parsed,
never evaluated as code."""

from __future__ import annotations

import pytest

from pageref.tracer.facts import _c_define, _c_enumerator, _int_expr


@pytest.mark.parametrize("expr, value", [
    ("0x40000", 0x40000), ("(1U << 10)", 1024), ("1 << 19", 1 << 19), ("0x01 | 0x04", 5),
    ("((((1))))", 1), ("0x80000ULL", 0x80000), ("(1UL << 63)", 1 << 63), ("~0", -1),
    ("16 >> 2", 4), ("0x10000UL", 0x10000), ("(2 * 3) + 1 - 2", 5),
])
def test_integer_expressions(expr, value):
    assert _int_expr(expr) == value


@pytest.mark.parametrize("expr", [
    '__import__("os").system("true")', "open('/etc/passwd')", "1 << 1000", "1 << -1",
    "9" * 300, "2 ** 10", "a.b", "1 if 1 else 2", "1 <<", "", "(" * 150 + "1" + ")" * 150,
    "[1, 2]", "lambda: 1", "'text'", "1.5", "True", "sizeof(int)", "(int)1",
    "0xffffffffffffffff * 0xffffffffffffffff", "UNKNOWN_MACRO | 1",
])
def test_hostile_or_unsupported_text_is_none(expr):
    assert _int_expr(expr) is None


def test_references_to_known_macros_and_cycles():
    text = ("#define FOLL_A 0x01\n#define FOLL_B (FOLL_A << 2) /* why */\n"
            "#define LOOP1 (LOOP2 | 1)\n#define LOOP2 (LOOP1 << 1)\n"
            "#define GUP_PIN_COUNTING_BIAS (1U << 10)\n"
            "enum {\n\tFOLL_PIN = 1 << 19,\n\tFOLL_C = FOLL_B | FOLL_E,\n"
            "\tFOLL_D = evil(),\n\tFOLL_E = 1 << 0,\n\tFOLL_X = FOLL_Y,\n\tFOLL_Y = FOLL_X,\n};\n")
    assert _c_define(text, "FOLL_B") == 4
    assert _c_define(text, "GUP_PIN_COUNTING_BIAS") == 1024
    assert _c_define(text, "LOOP1") is None          # cycles end, not hang
    assert _c_enumerator(text, "FOLL_PIN") == 1 << 19
    assert _c_enumerator(text, "FOLL_C") == 5
    assert _c_enumerator(text, "FOLL_D") is None
    assert _c_enumerator(text, "FOLL_X") is None       # a cycle of enumerators too
    assert _c_define(text, "ABSENT") is None
