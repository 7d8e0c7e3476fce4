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
            path = _user_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_cache_dir() -> Path:
    """`$PAGEREF_SHARED_CACHE`, else ~/.cache/pageref: one per machine and user.

    For what takes too long to redo per checkout: the debug lab kernel's build
    (minutes on two cores) serves every clone on the machine, CI's fresh ones
    included, where cache_dir() is per checkout.
    """
    env = os.environ.get("PAGEREF_SHARED_CACHE")
    path = Path(env) if env else _user_cache()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pageref"
