"""The probe plan and the BPF program's -D defines agree, on every fixture kernel
and every combination of the optional offsets its facts could lack: a target is
attached exactly when the defines its handler needs are there, and HAVE_<SYMBOL>
(which compiles the guarded handler) is emitted exactly for attached targets.
No root needed; tests/unit/test_tracer_compile.py compiles a sample of these."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.tracer.defines import (
    OPTIONAL_OFFSETS,
    OPTIONAL_SIZES,
    Options,
    defines,
    optional_defines,
)
from pageref.tracer.facts import KernelFacts
from pageref.tracer.plan import TARGETS, resolve

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kernels"
GENS = sorted(p.parent.name for p in FIX.glob("*/facts.json"))
BPF = Path(__file__).resolve().parents[2] / "bpf" / "pageref.bpf.c"
# Offsets every handler uses (defines.py layout(): the compile fails without them)
ALWAYS = {"OFF_PAGE_FLAGS", "OFF_PAGE_REFCOUNT", "OFF_PAGE_MAPPING", "OFF_PAGE_INDEX",
          "OFF_PAGE_COMPOUND_HEAD", "OFF_PGMAP", "OFF_PGMAP_TYPE", "SIZEOF_PAGE",
          "OFF_FOLIO_ORDER", "OFF_FOLIO_PINCOUNT"}
LOOP_BOUNDS = {"BIO_MAX_VECS", "BIO_MAX_PAGES"}   # constants of bpf/pageref.bpf.c


def removable(f: KernelFacts) -> list[tuple[str, str]]:
    """(kind, key) of the optional facts this kernel has: the ones a kernel's BTF
    or headers could fail to give."""
    return ([("offsets", k) for k, _ in OPTIONAL_OFFSETS if k in f.offsets]
            + [("sizes", k) for k, _ in OPTIONAL_SIZES if k in f.sizes])


def combos(gen: str):
    f = KernelFacts.load(FIX / gen)
    rem = removable(f)
    for n in range(len(rem) + 1):
        yield from itertools.combinations(rem, n)


def check_agreement(f: KernelFacts, full: dict[bool, set[str]]) -> None:
    """`full`: what the plan attaches on the complete fixture, per fentry choice."""
    avail = set(optional_defines(f))
    for fentry in (False, True):
        plan = resolve(f, fentry=fentry)
        attached = set(plan.symbols())
        try:
            d = defines(f, plan, Options())
        except PagerefError:   # hand-checked fixtures: names only, no page layout
            assert f.layout_source is None or not f.offsets
            d = {f"HAVE_{s.upper()}": 1 for s in attached} | optional_defines(f)
        left = {m.symbol: m.why for m in plan.missing}
        for t in TARGETS:
            assert (f"HAVE_{t.symbol.upper()}" in d) == (t.symbol in attached), t.symbol
            if t.symbol in attached:
                assert t.requires <= d.keys(), t.symbol
            if t.symbol not in full[fentry]:
                assert t.symbol not in attached, t.symbol
            elif t.requires <= avail:
                assert t.symbol in attached, t.symbol   # nothing it needs was removed
            else:   # left out for the defines, and said so with their names
                assert t.symbol not in attached
                assert left[t.symbol].startswith("needs "), left[t.symbol]
                for name in t.requires - avail:
                    assert name in left[t.symbol]
        cover = plan.header_coverage()
        assert {m["symbol"] for m in cover["left_out"]} == set(left)


@pytest.mark.parametrize("gen", GENS)
def test_plan_and_defines_agree_for_every_removable_combination(gen):
    base = KernelFacts.load(FIX / gen)
    full = {fe: set(resolve(base, fentry=fe).symbols()) for fe in (False, True)}
    n = 0
    for drop in combos(gen):
        f = KernelFacts.load(FIX / gen)
        for kind, key in drop:
            del getattr(f, kind)[key]
        check_agreement(f, full)
        n += 1
    assert n == 2 ** len(removable(base))


def test_61_without_bio_offsets_leaves_the_bio_walk_out_with_the_reason():
    f = KernelFacts.load(FIX / "6.1")
    del f.offsets["bio_vec.bv_len"]
    plan = resolve(f)
    assert "__bio_release_pages" not in plan.symbols()
    why = {m.symbol: m.why for m in plan.missing}["__bio_release_pages"]
    assert "OFF_BVEC_LEN" in why and "BTF" in why
    d = defines(f, plan, Options())
    assert "HAVE___BIO_RELEASE_PAGES" not in d and "OFF_BVEC_LEN" not in d
    assert any("__bio_release_pages" in u for u in plan.uncovered)


def _guarded_blocks(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """HAVE_<X> -> the C text under `#ifdef HAVE_<X>` (its own handlers), and
    HAVE_<X> -> the text of `#if defined(HAVE_<X>) || defined(HAVE_<Y>)` blocks
    (code shared by several targets: a walk), each up to its matching #endif."""
    own: dict[str, str] = {}
    shared: dict[str, str] = {}
    for m in re.finditer(r"^#(ifdef (HAVE_\w+)|if (defined\(HAVE_\w+\)(?: \|\| "
                         r"defined\(HAVE_\w+\))+))\n", text, re.M):
        depth, i = 1, m.end()
        for line in re.finditer(r"^#(if|ifdef|ifndef|endif)\b.*$", text[i:], re.M):
            depth += -1 if line.group(1) == "endif" else 1
            if depth == 0:
                body = text[i:i + line.start()]
                if m.group(2):
                    own[m.group(2)] = body
                else:
                    for name in re.findall(r"HAVE_\w+", m.group(3)):
                        shared[name] = shared.get(name, "") + body
                break
    return own, shared


def test_bpf_guards_match_the_targets_requirements():
    """Every target that declares requirements has its handlers under its
    HAVE_ guard, and what a guarded handler reads is what its target declares
    (other targets may be guarded too, to compile only what is attached)."""
    blocks, shared = _guarded_blocks(BPF.read_text())
    by_have = {f"HAVE_{t.symbol.upper()}": t for t in TARGETS}
    needing = {name for name, t in by_have.items() if t.requires}
    assert needing <= set(blocks) <= set(by_have)
    assert set(shared) <= set(blocks)
    for name, body in blocks.items():
        t = by_have[name]
        assert re.search(rf"^int on_{t.symbol}\(", body, re.M), name
        body += shared.get(name, "")
        code = re.sub(r'/\*.*?\*/|//[^\n]*|"[^"\n]*"', "", body, flags=re.S)
        used = set(re.findall(r"\b(?:OFF|SIZEOF|BIO)_[A-Z0-9_]+\b", code)) - ALWAYS - LOOP_BOUNDS
        assert used == set(t.requires), (name, used ^ set(t.requires))
    # and no unguarded copy of a guarded handler elsewhere
    text = BPF.read_text()
    for name in blocks:
        assert len(re.findall(rf"^int on_{by_have[name].symbol}\(", text, re.M)) == 1
