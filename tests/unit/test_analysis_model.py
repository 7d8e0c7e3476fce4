"""The page model's two ways of applying the pin_put_mismatch rule (event by
event for short page lives, mismatch by mismatch for long ones) agree."""

from __future__ import annotations

import random

import pytest
from analysis_support import Tr

import pageref.analysis.model as model
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


@pytest.mark.parametrize("seed", range(60))
def test_long_life_resolution_matches_the_replay(monkeypatch, seed):
    tr = random_page(seed).trace()
    monkeypatch.setattr(model, "_REPLAY_MAX", 10**9)
    slow = df_history(tr)
    monkeypatch.setattr(model, "_REPLAY_MAX", 0)
    fast = df_history(tr)
    assert fast["pins"].tolist() == slow["pins"].tolist()
    assert fast["pin_put"].tolist() == slow["pin_put"].tolist()
    assert fast["gets"].tolist() == slow["gets"].tolist()


def test_random_pages_do_exercise_mismatches():
    hits = sum(int(df_history(random_page(s).trace())["pin_put"].sum()) for s in range(60))
    assert hits > 10
