"""Where the lab keeps what it builds (initramfs, compiled workloads, run dirs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$PAGEREF_LAB_CACHE`, else `lab-cache/` in a source checkout, else ~/.cache/pageref.

    The guest sees the host's whole root over 9p, so any host path works; a
    source checkout keeps it next to the code (gitignored) so it is easy to find.
    """
    env = os.environ.get("PAGEREF_LAB_CACHE")
    if env:
        path = Path(env)
    else:
        repo = Path(__file__).resolve().parent.parent
        if (repo / "pyproject.toml").is_file() and os.access(repo, os.W_OK):
            path = repo / "lab-cache"
        else:
            path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pageref"
    path.mkdir(parents=True, exist_ok=True)
    return path
