"""Writing an output file safely: the one owner of "never destroy the input, never
leave half a file".

Every file pageref writes from a trace (`convert`, `report`, `history --plot`)
is written beside its final name under a temporary one and renamed only when
complete, so a failure (an unreadable event, a full disk, Ctrl-C) leaves the old
file, if any, as it was and no temporary file behind. An output that is the
input, a hard link to it or a symbolic link to it, or a file inside the input
recording, is refused before anything is opened: identity is by device and
inode, not by name.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pageref.errors import PagerefError


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _input_idents(src: Path) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(files, directories) making up the input, by (device, inode)."""
    files: set[tuple[int, int]] = set()
    dirs: set[tuple[int, int]] = set()
    try:
        st = os.stat(src)
    except OSError:
        return files, dirs  # the reader will say why it cannot read it
    if stat.S_ISDIR(st.st_mode):
        dirs.add(_ident(st))
        try:
            with os.scandir(src) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        files.add(_ident(entry.stat()))
        except OSError:
            pass
    else:
        files.add(_ident(st))
    return files, dirs


def check_output(dst: Path, src: Path) -> None:
    """Refuse `dst` when writing it could change the input `src`: the same file
    (under any name), or a file inside the input recording's directory."""
    files, dirs = _input_idents(Path(src))
    try:
        st = os.stat(dst)
    except OSError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise PagerefError(f"{dst}: is a directory; give a file name for the output")
        if _ident(st) in files:
            raise PagerefError(f"{dst}: is the input {src} (the same file, by inode): the "
                               "output would overwrite the input; choose another name")
    parent = Path(os.path.abspath(dst)).parent
    for d in (parent, *parent.parents):
        try:
            ident = _ident(os.stat(d))
        except OSError:
            continue
        if ident in dirs:
            raise PagerefError(f"{dst}: is inside the input recording {src}; write the "
                               "output somewhere else")


# Suffixes that only say "a trace" and may be dropped from a derived name.
TRACE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".trace")


def default_name(trace: Path, suffix: str) -> Path:
    """An output name in the current directory derived from the trace's:
    run.trace.jsonl -> run.html, run.1.jsonl -> run.1.html (only the suffixes
    that name a trace format are dropped, so two traces keep two names)."""
    base = Path(str(trace).rstrip("/") or "trace").name or "trace"
    while True:
        stem, dot, ext = base.rpartition(".")
        if not (dot and stem and f".{ext.lower()}" in TRACE_SUFFIXES):
            break
        base = stem
    return Path(base + suffix)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, hidden name); on a
    clean exit rename it over `path`, on any error remove it."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                dir=directory)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through `replacing`."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
