"""The page model's pin_put_mismatch replay agrees with the rule applied event
by event (an oracle written out here), and stays linear on a page with many
alternating pins and puts in one life (it was quadratic: issue 11 point 4)."""

from __future__ import annotations

import random
import time

import pytest
from analysis_support import Tr

import pageref.analysis.model as model
from pageref.analysis.anomalies import columns_of
from pageref.analysis.history import df_history


def random_page(seed: int) -> Tr:
    rng = random.Random(seed)
    t = Tr()
    pins, rc = 0, 1
    for _ in range(rng.randint(1, 60)):
        r = rng.random()
        order = 9 if seed % 3 == 0 else None
        w = 1 if order else 1024
        if r < 0.3:
            t.add("pin", rc=rc, order=order)
            rc, pins = rc + w, pins + 1
        elif r < 0.45 and pins:
            t.add("unpin", rc=rc, order=order)
            rc, pins = rc - w, pins - 1
        elif r < 0.65:
            t.add("get", rc=rc, order=order)
            rc += 1
        elif r < 0.95:
            t.add("put", rc=rc if rng.random() < 0.8 else None, order=order)
            rc -= 1
        else:
            t.add("free", rc=rc, order=order)
    return t


def oracle(tr) -> tuple[list[int], list[bool], list[int]]:
    """pins, pin_put and gets after each event of a one-page trace, by the rule
    in docs/anomalies.md, one event at a time."""
    bias = tr.header.pin_bias
    idle = tr.header.idle_for("fsdax")
    P = G = 0
    pins, pin_put, gets = [], [], []
    for e in tr.events.to_dict("records"):
        k, r = e["kind"], int(e["refs"]) if e["refs"] == e["refs"] and e["refs"] is not None else 1
        w = 1 if (e["order"] == e["order"] and e["order"] is not None and e["order"] > 0) \
            else bias
        rc = e["refcount"]
        seen = rc is not None and rc == rc
        mm = False
        if k == "pin":
            P += r
        elif k == "unpin":
            P = max(0, P - r)
        elif k == "get":
            G += r
        elif k == "put":
            if P > 0 and seen and int(rc) - r < idle + P * w:
                mm, P = True, max(0, P - r)
            else:
                G = max(0, G - r)
        elif k == "free":
            P = G = 0
        pins.append(P)
        pin_put.append(mm)
        gets.append(G)
    return pins, pin_put, gets


@pytest.mark.parametrize("seed", range(60))
def test_replay_matches_the_rule_event_by_event(seed):
    tr = random_page(seed).trace()
    h = df_history(tr)
    pins, pin_put, gets = oracle(tr)
    assert h["pins"].tolist() == pins
    assert h["pin_put"].tolist() == pin_put
    assert h["gets"].tolist() == gets


def test_alternating_pins_and_puts_in_one_life_are_linear():
    """Issue 11 point 4: 80k events took 6.5 s and 320k 96 s (quadratic); at
    400k a linear replay takes a few seconds, the old one about 2.5 minutes."""
    t = Tr()
    rc = 1
    for _ in range(200_000):
        t.add("pin", rc=rc)
        rc += 1024
        t.add("put", rc=rc)   # a pin released through put_page: a mismatch each time
        rc -= 1
    tr = t.trace()
    t0 = time.monotonic()
    m = model.build(columns_of(tr), 10**9)
    took = time.monotonic() - t0
    assert int(m.mismatch.sum()) > 0
    assert took < 30, f"pin_put_mismatch replay took {took:.1f} s on 400k events"


def test_random_pages_do_exercise_mismatches():
    hits = sum(int(df_history(random_page(s).trace())["pin_put"].sum()) for s in range(60))
    assert hits > 10
