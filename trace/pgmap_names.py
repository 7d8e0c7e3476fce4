"""The name a user sees for each pgmap type: one owner for the display.

The trace keeps the kernel's name (trace/schema.py PGMAP_TYPES, read from
`enum memory_type`, include/linux/memremap.h). Output for people (analyze,
history, the report) says what the pages are. The kernel's
MEMORY_DEVICE_GENERIC is the type device DAX (drivers/dax/device.c,
dev_dax_probe) gives the pages of /dev/daxX.Y; the same enum value also
serves Xen's unpopulated-alloc memory, which this project has never seen in a
trace, so `generic` is shown as `devdax` and the docs say so.
"""

from __future__ import annotations

# kernel-side name (trace) -> user-facing name; types not listed keep their name
DISPLAY = {"generic": "devdax"}


def display_name(pgmap_type: str | None) -> str:
    """The user-facing name of a trace's pgmap_type value ("-" when none)."""
    if pgmap_type is None or pgmap_type == "":
        return "-"
    return DISPLAY.get(pgmap_type, pgmap_type)
