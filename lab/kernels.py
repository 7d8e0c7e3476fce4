"""The lab's kernel generations: Debian's 5.10 (bullseye-security), 6.1 (the
host's bookworm kernel), 6.12 (trixie), 7.2 (sid / trixie-backports) and
`newest` (the newest kernel Debian serves at all: today 7.3 in trixie-backports),
and `6.12-debug`, built here from Debian's 6.12 source (lab/debug_kernel.py).

`ensure_kernel(generation)` returns a `KernelFiles` the lab can boot: the image,
a modules tree with uncompressed .ko files and a modules.dep, and the headers
BCC compiles against inside the guest.

6.1 is the host's own installed `linux-image-amd64` (bin/setup installs it).
The others are the newest build of their series the archive serves today
(pageref.lab.kernel_archive.resolve; no build is pinned, since Debian drops
superseded ones), downloaded through a PRIVATE apt configuration under
lab-cache/apt/ and unpacked with `dpkg-deb -x` into
lab-cache/kernels/<gen>/root/. The host's apt sources are never touched and
nothing is `dpkg -i`'d: installing a sid kernel package would drag sid's libc
into the host with the next `apt-get install`.

A marker file (lab-cache/kernels/<gen>/complete.json) names the build taken
and makes a second call free and offline; `refresh=True` (`pageref lab kernels
--refresh`) asks the archive again and fetches a newer build if there is one.
What a kernel can do is detected from the booted kernel (its kallsyms, BTF,
tracefs), never from the generation's name.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pageref.errors import PagerefError
from pageref.lab.debug_config import DEBUG_GENERATIONS, debug_series
from pageref.lab.debug_kernel import ensure_debug_kernel
from pageref.lab.kernel_archive import (
    PrivateApt,
    Resolved,
    release_key,
    resolve,
)
from pageref.lab.paths import cache_dir
from pageref.tracer.build_cflags import build_cflags

# The generations `pageref lab --kernel` offers. DEFAULT_LAB_KERNELS is what the
# lab tests and CI boot: 7.2 stays offered while the archive serves a 7.2
# build, but `newest` (7.3 today) carries the post-6.15 rules in CI. The debug
# build (6.12-debug) is not in DEFAULT_LAB_KERNELS: the ordinary parts do not
# run on it; bin/setup builds it and tests/lab/test_lab_debug.py boots it once
# for its own part.
GENERATIONS: tuple[str, ...] = ("5.10", "6.1", "6.12", "7.2", "newest", *DEBUG_GENERATIONS)
DEFAULT_GENERATION = "6.1"
DEFAULT_LAB_KERNELS: tuple[str, ...] = ("5.10", "6.1", "6.12", "newest")

# Bump when the unpacked layout changes, so old caches are redone.
_CACHE_FORMAT = 2


@dataclass(frozen=True)
class KernelFiles:
    """One bootable lab kernel, unpacked (or installed, for 6.1)."""

    release: str  # `uname -r` inside the guest, e.g. "6.12.107+deb13-amd64"
    vmlinuz: Path
    modules_dir: Path  # .../lib/modules/<release>: uncompressed .ko, modules.dep
    headers_dir: Path | None  # .../usr/src/linux-headers-<release>, or None
    root: Path  # unpack root ("/" for the host's installed 6.1)
    generation: str = ""
    system_map: Path | None = None
    config: Path | None = None
    # Extra clang flags BCC needs for this kernel's headers with bookworm's
    # libclang (7.2's headers use Microsoft anonymous-struct extensions).
    bcc_cflags: list[str] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)  # name -> version used


# Each downloaded generation is a series (a `uname -r` pattern); the build is
# whatever the archive serves newest today (kernel_archive.resolve).
SERIES: dict[str, str] = {
    # Debian 11's kernel: bullseye-security only (bullseye proper is archived).
    "5.10": r"5\.10\.0-\d+-amd64",
    "6.12": r"6\.12\.\d+\+deb\d+-amd64",
    "7.2": r"7\.2\.\d+\+deb\d+-amd64",
    # Any version at all: the newest kernel any of our suites serves.
    "newest": r"\d+\.\d+\.\d+\+deb\d+-amd64",
}


def _progress(msg: str) -> None:
    print(f"pageref lab: {msg}", file=sys.stderr, flush=True)


def kernel_dir(generation: str) -> Path:
    return cache_dir() / "kernels" / _check_generation(generation)


def _check_generation(generation: str) -> str:
    if generation not in GENERATIONS:
        raise PagerefError(
            f"unknown lab kernel {generation!r}; choose one of {', '.join(GENERATIONS)}"
        )
    return generation


def ensure_kernel(generation: str, refresh: bool = False) -> KernelFiles:
    """Return the lab kernel of `generation`, downloading and unpacking it once.

    With `refresh`, ask the archive for its newest build of the series again
    and fetch it when it is not the cached one (the cached one stays usable
    offline otherwise)."""
    _check_generation(generation)
    if generation == "6.1":
        return _host_kernel()
    if debug_series(generation) is not None:  # built (`lab kernels --debug`), never downloaded
        return ensure_debug_kernel(generation)
    kdir = kernel_dir(generation)
    marker = kdir / "complete.json"
    kf = None
    if marker.exists():
        try:
            kf = _from_marker(json.loads(marker.read_text()))
        except (ValueError, KeyError, TypeError):
            kf = None
        if kf is None:
            _progress(f"kernel {generation}: cache incomplete or from an older pageref, redoing")
    if kf is not None and not refresh:
        return kf
    apt = PrivateApt(cache_dir() / "apt")
    found = _choose_release(apt, generation)
    if kf is not None and kf.release == found.release:
        _progress(f"kernel {generation}: {kf.release} is already the newest; nothing to fetch")
        return kf
    return _fetch(generation, kdir, apt, found)


def cached_release(generation: str) -> str | None:
    """The build a downloaded generation took (from its marker), without the network."""
    try:
        return str(json.loads((kernel_dir(generation) / "complete.json").read_text())["release"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --- 6.1: the host's installed Debian kernel --------------------------------------


def _host_kernel() -> KernelFiles:
    # Not the running kernel (the host runs something else): the newest
    # installed 6.1.*-amd64 that has an image in /boot.
    releases = sorted(
        (
            p.name
            for p in Path("/lib/modules").glob("6.1.*-amd64")
            if Path("/boot", f"vmlinuz-{p.name}").exists()
        ),
        key=release_key,
    )
    if not releases:
        raise PagerefError(
            "the lab's 6.1 kernel is not installed (no /boot/vmlinuz-6.1.*-amd64); "
            "run bin/setup (installs linux-image-amd64 and linux-headers-amd64)"
        )
    release = releases[-1]
    mods = Path("/lib/modules", release)
    if not (mods / "modules.dep").exists():
        raise PagerefError(
            f"{mods}/modules.dep is missing; run `depmod {release}` as root"
        )
    headers = Path("/usr/src", f"linux-headers-{release}")
    system_map = Path("/boot", f"System.map-{release}")
    config = Path("/boot", f"config-{release}")
    return KernelFiles(
        release=release,
        vmlinuz=Path("/boot", f"vmlinuz-{release}"),
        modules_dir=mods,
        headers_dir=headers if headers.is_dir() else None,
        root=Path("/"),
        generation="6.1",
        system_map=_real_system_map(system_map if system_map.exists() else None),
        config=config if config.exists() else None,
        bcc_cflags=_bcc_cflags(headers if headers.is_dir() else None),
    )


# --- downloaded generations: the newest build of the series -------------------------


def _choose_release(apt: PrivateApt, generation: str) -> Resolved:
    found = resolve(apt.kernel_candidates(), SERIES[generation])
    if found is None:
        raise PagerefError(
            f"no {generation} kernel ({SERIES[generation]}) in Debian's "
            f"{', '.join(apt.suites)} any more; pageref's lab needs updating for this generation"
        )
    _progress(f"kernel {generation}: the archive's newest build is {found.release} "
              f"({found.image_package} {found.version})")
    return found


def _package_set(apt: PrivateApt, found: Resolved) -> dict[str, str]:
    """name -> version of every package to unpack, headers' deps read from Depends."""
    release = found.release
    wanted = [p + release for p in found.layout]
    packages: dict[str, str] = {}
    versions = apt.candidates(wanted)
    for name in wanted:
        version = versions.get(name)
        if version is None:
            raise PagerefError(f"package {name} is not in the archive; try again later")
        packages[name] = version
    headers = "linux-headers-" + release
    # The headers package depends on its -common half and on the matching kbuild
    # (scripts/ and tools/ are symlinks into it): take their names from Depends
    # rather than guessing Debian's naming.
    for dep in apt.depends(headers, packages[headers]):
        if re.match(r"linux-(headers-.*-common|kbuild-)", dep) and dep not in packages:
            version = apt.candidate(dep)
            if version is None:
                raise PagerefError(f"package {dep} (needed by {headers}) is not in the archive")
            packages[dep] = version
    return packages


def _fetch(generation: str, kdir: Path, apt: PrivateApt | None = None,
           found: Resolved | None = None) -> KernelFiles:
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "depmod"):
        if shutil.which(tool) is None and not Path("/sbin", tool).exists():
            raise PagerefError(f"{tool} not found; the lab needs Debian's apt, dpkg and kmod")
    t0 = time.monotonic()
    apt = apt or PrivateApt(cache_dir() / "apt")
    found = found or _choose_release(apt, generation)
    release = found.release
    packages = _package_set(apt, found)
    debs = kdir / "debs"
    root = kdir / "root"
    if root.exists():
        shutil.rmtree(root)
    _progress(f"kernel {generation}: downloading {', '.join(packages)}")
    apt.download(packages, debs)
    t_download = time.monotonic() - t0

    t1 = time.monotonic()
    root.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        _progress(f"kernel {generation}: unpacking {deb.name}")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    # Merged-/usr packages (7.2) ship only usr/lib/modules; depmod -b and the
    # guest look under lib/modules, as on a merged-/usr system.
    if not (root / "lib").exists() and (root / "usr" / "lib").is_dir():
        (root / "lib").symlink_to("usr/lib")
    modules_dir = root / "lib" / "modules" / release
    if not modules_dir.is_dir():
        raise PagerefError(f"unpacked {generation} kernel has no lib/modules/{release}")
    n = decompress_modules(modules_dir)
    _progress(f"kernel {generation}: decompressed {n} modules; running depmod")
    subprocess.run(["depmod", "-b", str(root), release], check=True)
    _fix_build_link(root, release)
    shutil.rmtree(debs)
    t_unpack = time.monotonic() - t1

    kf = kernel_files(generation, root, release, packages)
    marker = {
        "format": _CACHE_FORMAT,
        "generation": generation,
        "release": release,
        "root": str(root),
        "packages": packages,
        "suites": list(apt.suites),
        "download_seconds": round(t_download, 1),
        "unpack_seconds": round(t_unpack, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (kdir / "complete.json").write_text(json.dumps(marker, indent=1) + "\n")
    _progress(
        f"kernel {generation}: {release} ready in {root} "
        f"(download {t_download:.0f} s, unpack {t_unpack:.0f} s)"
    )
    return kf


def _from_marker(marker: dict) -> KernelFiles | None:
    if marker.get("format") != _CACHE_FORMAT:
        return None
    root = Path(marker["root"])
    if not root.is_dir():  # the repository moved: the marker names the old path
        return None
    kf = kernel_files(marker["generation"], root, marker["release"], marker["packages"])
    if not (kf.modules_dir / "modules.dep").exists():
        return None
    return kf


def kernel_files(generation: str, root: Path, release: str,
                 packages: dict[str, str]) -> KernelFiles:
    """The KernelFiles of a kernel laid out as Debian's packages unpack (also
    what lab/debug_kernel.py installs its build as)."""
    modules_dir = root / "lib" / "modules" / release
    # 6.12 keeps the image in /boot; 7.2 (linux-binary-) under the modules dir.
    vmlinuz = _first(root / "boot" / f"vmlinuz-{release}", modules_dir / "vmlinuz")
    if vmlinuz is None:
        raise PagerefError(f"unpacked {generation} kernel in {root} has no vmlinuz")
    headers = root / "usr" / "src" / f"linux-headers-{release}"
    headers_dir = headers if headers.is_dir() else None
    return KernelFiles(
        release=release,
        vmlinuz=vmlinuz,
        modules_dir=modules_dir,
        headers_dir=headers_dir,
        root=root,
        generation=generation,
        system_map=_real_system_map(
            _first(root / "boot" / f"System.map-{release}", modules_dir / "System.map")
        ),
        config=_first(root / "boot" / f"config-{release}", modules_dir / "config"),
        bcc_cflags=_bcc_cflags(headers_dir),
        packages=dict(packages),
    )


def _real_system_map(path: Path | None) -> Path | None:
    """None for Debian's one-line placeholder ("The real System.map is in the
    linux-image-...-dbg package"), which 6.1, 6.12 and 7.2 all ship."""
    if path is None or path.stat().st_size > 4096:
        return path
    return None if "real System.map" in path.read_text(errors="replace") else path


def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def _bcc_cflags(headers_dir: Path | None) -> list[str]:
    # The same detection the recorder does on the running kernel (7.2's headers
    # need -fms-extensions); see pageref.tracer.build_cflags.
    return build_cflags(headers_dir) if headers_dir is not None else []


def _fix_build_link(root: Path, release: str) -> None:
    """Point lib/modules/<release>/{build,source} into the unpack root, relatively.

    The packages' links are absolute (/usr/src/linux-headers-<release> for the
    generated half, /usr/src/linux-headers-<ver>-common for the rest; BCC needs
    both, and uses `source` when it exists), which on the host would name the
    host's own, absent, headers. Relative links resolve inside the unpack root
    both on the host and in the guest, which sees the cache over 9p.
    """
    mods = (root / "lib" / "modules" / release).resolve()
    for name in ("build", "source"):
        link = mods / name
        if not link.is_symlink():
            continue
        target = os.readlink(link)
        if not os.path.isabs(target):
            continue
        inside = root / target.lstrip("/")
        link.unlink()
        if inside.is_dir():
            link.symlink_to(os.path.relpath(inside.resolve(), mods))


def _decompress_one(path: Path) -> None:
    out = path.with_suffix("")  # foo.ko.xz -> foo.ko
    if path.suffix == ".xz":
        with lzma.open(path) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        path.unlink()
    elif path.suffix == ".zst":
        subprocess.run(["zstd", "-q", "-d", "--rm", "-f", str(path), "-o", str(out)], check=True)
    elif path.suffix == ".gz":
        import gzip

        with gzip.open(path) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        path.unlink()


def decompress_modules(modules_dir: Path) -> int:
    """Turn every .ko.xz/.ko.zst/.ko.gz under modules_dir into a plain .ko.

    The lab's busybox initramfs insmods plain files, and plain .ko also load
    faster under TCG. Returns how many were decompressed.
    """
    compressed = [
        p for ext in ("xz", "zst", "gz") for p in modules_dir.rglob(f"*.ko.{ext}")
    ]
    # lzma releases the GIL: two threads use both cores.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_decompress_one, compressed))
    return len(compressed)
