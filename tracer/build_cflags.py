"""Compiler flags a kernel's headers need that BCC does not add by itself.

BCC compiles against /lib/modules/<release>/build (and `source`, Debian's
-common half) but does not read the kernel's Makefile, so dialect flags the
kernel's own build passes are missing. Linux 6.19+ builds with -fms-extensions
(anonymous struct members named by tag; Kconfig CONFIG_CC_MS_EXTENSIONS, put
into CC_FLAGS_DIALECT by the top Makefile together with clang's
-Wno-microsoft-anon-tag), and its headers do not parse without it. Detected
from the headers' configuration, never from the version number.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def build_cflags(build_dir: str | Path | None = None) -> list[str]:
    """Extra clang flags for the headers in `build_dir` (default: the running
    kernel's /lib/modules/<release>/build); [] when none are needed or unknown."""
    if build_dir is None:
        build_dir = Path("/lib/modules", os.uname().release, "build")
    try:
        auto_conf = (Path(build_dir) / "include" / "config" / "auto.conf").read_text(
            errors="replace"
        )
    except OSError:
        return []
    m = re.search(r'^CONFIG_CC_MS_EXTENSIONS="?([^"\n]+)', auto_conf, re.M)
    if not m:
        return []
    return [*m.group(1).split(), "-Wno-microsoft-anon-tag"]
