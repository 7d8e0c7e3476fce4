"""What a kernel headers tree says (tracer/header_layout.py), kept between runs.

Compiling bpf/kernel_layout.c against mm.h takes seconds on a host and three
minutes in the lab's QEMU guest (several compiles where facts are absent, as
on 5.10), and a kernel without BTF needs it at every `record` and `doctor`.
The read depends only on the headers tree and the layout program, so it is
kept in one small JSON file per (tree, program), under $PAGEREF_CACHE_DIR, else
$XDG_CACHE_HOME/pageref, else ~/.cache/pageref. The key covers the program's
text, the tree's real path, its kernel release and its generated config and
version headers (a rebuilt or upgraded tree is a new key), and BCC's version.
A file that is unreadable or not of the declared shape is ignored, never
trusted: the cache only ever saves a compile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from pageref.trace.output import write_text

# what identifies a headers tree's content without hashing all of it
_TREE_FILES = ("include/generated/autoconf.h", "include/generated/utsrelease.h",
               "include/config/kernel.release", "Makefile")


@dataclasses.dataclass(frozen=True)
class HeadersRead:
    """What one headers tree gave: fact values, facts absent, and the cost."""

    values: dict[str, int]
    missing: list[str]
    compiles: int
    seconds: float


def cache_dir() -> Path:
    env = os.environ.get("PAGEREF_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pageref"


def key(tree: Path, program: str) -> str:
    h = hashlib.sha256(program.encode())
    h.update(str(tree.resolve()).encode())
    for name in _TREE_FILES:
        try:
            st = (tree / name).stat()
            h.update(f"{name} {st.st_size} {st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{name} -".encode())
    try:
        import bcc

        h.update(str(getattr(bcc, "__version__", "?")).encode())
    except ImportError:
        pass
    return h.hexdigest()[:32]


def load(k: str) -> HeadersRead | None:
    try:
        d = json.loads((cache_dir() / f"layout-{k}.json").read_text())
        values, missing = d["values"], d["missing"]
        ok = (isinstance(values, dict) and isinstance(missing, list)
              and all(isinstance(n, str) and type(v) is int for n, v in values.items())
              and all(isinstance(n, str) for n in missing))
        if not ok:
            return None
        return HeadersRead(dict(values), list(missing), int(d["compiles"]),
                           float(d["seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(k: str, read: HeadersRead) -> None:
    """Best effort: a cache that cannot be written costs the next run a compile."""
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        write_text(d / f"layout-{k}.json", json.dumps(dataclasses.asdict(read)))
    except OSError:
        pass
