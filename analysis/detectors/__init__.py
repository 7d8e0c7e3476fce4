"""The anomaly catalog: one module per detector, each with KIND and
detect(model) -> list[Anomaly]. docs/anomalies.md describes every one."""

from __future__ import annotations

from pageref.analysis.detectors import (
    busy_check_missed_reference,
    busy_page_stall,
    double_free,
    free_while_referenced,
    grab_on_free_page,
    grab_refused_on_free_page,
    longterm_pin_fsdax,
    missed_wakeup,
    pin_leak,
    pin_put_mismatch,
    refcount_underflow,
)

# In the catalog order, pageref's own additions last.
DETECTORS = (
    refcount_underflow,
    grab_on_free_page,
    pin_put_mismatch,
    pin_leak,
    free_while_referenced,
    double_free,
    busy_page_stall,
    missed_wakeup,
    longterm_pin_fsdax,
    grab_refused_on_free_page,
    busy_check_missed_reference,
)

KINDS = tuple(d.KIND for d in DETECTORS)
