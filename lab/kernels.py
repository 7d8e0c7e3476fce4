"""The lab's three kernel generations: Debian's 6.1 (bookworm), 6.12 (trixie), 7.2 (sid).

`ensure_kernel(generation)` returns a `KernelFiles` the lab can boot: the image,
a modules tree with uncompressed .ko files and a modules.dep, and the headers
BCC compiles against inside the guest.

6.1 is the host's own installed `linux-image-amd64` (bin/setup installs it).
6.12 and 7.2 are downloaded from the same Debian mirror the host already uses,
through a PRIVATE apt configuration under lab-cache/apt/ (its own sources list
naming trixie and sid, its own lists, cache and an empty dpkg status), and are
unpacked with `dpkg-deb -x` into lab-cache/kernels/<gen>/root/. The host's apt
sources are never touched and nothing is `dpkg -i`'d: installing a sid kernel
package would drag sid's libc into the host with the next `apt-get install`.

A marker file (lab-cache/kernels/<gen>/complete.json) makes a second call free
and offline.
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
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pageref.errors import PagerefError
from pageref.lab.paths import cache_dir
from pageref.tracer.build_cflags import build_cflags

GENERATIONS: tuple[str, ...] = ("6.1", "6.12", "7.2")
DEFAULT_GENERATION = "6.1"

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


@dataclass(frozen=True)
class _Spec:
    """How to find one generation's packages in the archive."""

    suite: str
    # The release we found and tested (pinned); used when the archive still has it.
    pinned_release: str
    # Any release of the same series, when the pinned one has left the archive.
    release_re: str
    # The package that carries the image; its name is <prefix><release>.
    image_prefix: str
    # Further per-release packages (headers' -common and kbuild come from Depends).
    extra_prefixes: tuple[str, ...]


_SPECS: dict[str, _Spec] = {
    # Found 2026-11 with `apt-cache policy` on trixie/main: 6.12.107-1 (the
    # previous ABI 6.12.94+deb13 is still listed too). The signed image
    # package holds the image, System.map, config and the modules (.ko.xz).
    "6.12": _Spec(
        suite="trixie",
        pinned_release="6.12.107+deb13-amd64",
        release_re=r"6\.12\.\d+\+deb13-amd64",
        image_prefix="linux-image-",
        extra_prefixes=("linux-headers-",),
    ),
    # Found 2026-11 on sid/main: 7.2.13-1. From 7.x Debian splits the image
    # into linux-binary- (vmlinuz, under /usr/lib/modules/<release>/),
    # linux-modules- and linux-base-; linux-image- is an empty meta package.
    "7.2": _Spec(
        suite="sid",
        pinned_release="7.2.13+deb14-amd64",
        release_re=r"7\.2\.\d+\+deb14-amd64",
        image_prefix="linux-binary-",
        extra_prefixes=("linux-modules-", "linux-base-", "linux-headers-"),
    ),
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


def ensure_kernel(generation: str) -> KernelFiles:
    """Return the lab kernel of `generation`, downloading and unpacking it once."""
    _check_generation(generation)
    if generation == "6.1":
        return _host_kernel()
    kdir = kernel_dir(generation)
    marker = kdir / "complete.json"
    if marker.exists():
        try:
            kf = _from_marker(json.loads(marker.read_text()))
        except (ValueError, KeyError, TypeError):
            kf = None
        if kf is not None:
            return kf
        _progress(f"kernel {generation}: cache incomplete or from an older pageref, redoing")
    return _fetch(generation, kdir)


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
        key=_release_key,
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


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", release))


# --- 6.12 and 7.2: downloaded through a private apt configuration --------------------


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache under lab-cache/apt/.

    Dir::State::status=/dev/null: resolution ignores what the host has installed,
    and nothing here can change the host's dpkg database.
    """

    def __init__(self, base: Path, suites: Iterable[str] = ("trixie", "sid"),
                 retries: int | None = None) -> None:
        self.base = base
        self.suites = tuple(suites)
        self.retries = retries  # None: apt's default (a few, with back-off)
        self._updated = False

    def options(self) -> list[str]:
        b = self.base
        return [
            "-o", f"Dir::Etc::SourceList={b / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={b / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={b / 'lists'}",
            "-o", f"Dir::Cache={b / 'cache'}",
            "-o", "Dir::State::status=/dev/null",
            "-o", "APT::Architecture=amd64",
            "-o", "APT::Get::List-Cleanup=0",
            "-o", "Debug::NoLocking=1",  # our own lists dir: no need for the host's lock
            # Downloads go into lab-cache/, which the _apt user may not reach.
            "-o", "APT::Sandbox::User=root",
        ] + ([] if self.retries is None else ["-o", f"Acquire::Retries={self.retries}"])

    def _write_config(self) -> None:
        mirror = host_debian_mirror()
        for d in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
        lines = [f"deb [signed-by={keyring}] {mirror} {s} main" for s in self.suites]
        text = "# pageref lab: kernels only; never used by the host's apt\n" + "\n".join(lines)
        path = self.base / "sources.list"
        if not path.exists() or path.read_text() != text + "\n":
            path.write_text(text + "\n")

    def update(self) -> None:
        if self._updated:
            return
        self._write_config()
        _progress(f"reading the {' and '.join(self.suites)} package lists ({host_debian_mirror()})")
        r = subprocess.run(
            ["apt-get", "-q", *self.options(), "update"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        if r.returncode != 0 or re.search(r"^(E:|Err:)", r.stdout, re.M):
            detail = "; ".join(
                ln.strip() for ln in r.stdout.splitlines() if ln.startswith(("E:", "Err:", "W:"))
            )
            raise PagerefError(
                f"cannot read the Debian archive's {'/'.join(self.suites)} lists "
                f"({detail or 'apt-get update failed'}); the lab's 6.12 and 7.2 kernels "
                "come from there: check the network or proxy, or use --kernel 6.1"
            )
        self._updated = True

    def cache(self, *args: str) -> str:
        self.update()
        r = subprocess.run(
            ["apt-cache", *self.options(), *args], capture_output=True, text=True
        )
        if r.returncode != 0:
            raise PagerefError(f"apt-cache {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def candidate(self, package: str) -> str | None:
        """The version apt would pick for `package` in our suites, or None."""
        out = self.cache("policy", package)
        m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
        return m.group(1) if m and m.group(1) != "(none)" else None

    def depends(self, package: str, version: str) -> list[str]:
        out = self.cache("show", f"{package}={version}")
        m = re.search(r"^Depends:\s*(.*)$", out, re.M)
        if not m:
            return []
        return [re.split(r"[\s(]", alt.strip())[0] for alt in re.split(r"[,|]", m.group(1))]

    def download(self, packages: dict[str, str], dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        pins = [f"{name}={version}" for name, version in packages.items()]
        r = subprocess.run(
            ["apt-get", "-q", *self.options(), "download", *pins],
            cwd=dest, stdout=sys.stderr, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if r.returncode != 0:
            raise PagerefError(
                f"downloading {', '.join(pins)} failed (see apt's messages above); "
                "check the network, or use --kernel 6.1"
            )


def host_debian_mirror() -> str:
    """The Debian mirror the host's own apt sources use (deb822 or one-line)."""
    candidates: list[str] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            uris = re.search(r"^URIs:\s*(.+)$", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and re.search(r"\b(bookworm|trixie|sid|stable)\b", suites.group(1)):
                if not re.search(r"-security\b", suites.group(1)):
                    candidates += uris.group(1).split()
    one_line = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]
    for path in one_line:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and re.match(r"(bookworm|trixie|sid|stable)$", m.group(2)):
                candidates.append(m.group(1))
    for uri in candidates:
        if "debian" in uri and "security" not in uri:
            return uri.rstrip("/")
    raise PagerefError(
        "found no Debian mirror in /etc/apt/sources.list(.d); the lab downloads its "
        "6.12 and 7.2 kernels from the same mirror as the host's bookworm packages"
    )


def _choose_release(apt: PrivateApt, spec: _Spec, generation: str) -> str:
    if apt.candidate(spec.image_prefix + spec.pinned_release):
        return spec.pinned_release
    # Debian drops old kernel ABIs from the archive: take the newest of the series.
    names = apt.cache("pkgnames", spec.image_prefix).split()
    pat = re.compile(re.escape(spec.image_prefix) + "(" + spec.release_re + ")$")
    found = sorted((m.group(1) for n in names if (m := pat.match(n))), key=_release_key)
    if not found:
        raise PagerefError(
            f"no {generation} kernel ({spec.image_prefix}{spec.release_re}) in Debian "
            f"{spec.suite} any more; pageref's lab needs updating for this generation"
        )
    _progress(
        f"kernel {generation}: pinned {spec.pinned_release} has left the archive, "
        f"using {found[-1]}"
    )
    return found[-1]


def _package_set(apt: PrivateApt, spec: _Spec, release: str) -> dict[str, str]:
    """name -> version of every package to unpack, headers' deps read from Depends."""
    wanted = [spec.image_prefix + release] + [p + release for p in spec.extra_prefixes]
    packages: dict[str, str] = {}
    for name in wanted:
        version = apt.candidate(name)
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


def _fetch(generation: str, kdir: Path) -> KernelFiles:
    spec = _SPECS[generation]
    for tool in ("apt-get", "apt-cache", "dpkg-deb", "depmod"):
        if shutil.which(tool) is None and not Path("/sbin", tool).exists():
            raise PagerefError(f"{tool} not found; the lab needs Debian's apt, dpkg and kmod")
    t0 = time.monotonic()
    apt = PrivateApt(cache_dir() / "apt")
    apt.update()
    release = _choose_release(apt, spec, generation)
    packages = _package_set(apt, spec, release)
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

    kf = _files(generation, root, release, packages)
    marker = {
        "format": _CACHE_FORMAT,
        "generation": generation,
        "release": release,
        "root": str(root),
        "packages": packages,
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
    kf = _files(marker["generation"], root, marker["release"], marker["packages"])
    if not (kf.modules_dir / "modules.dep").exists():
        return None
    return kf


def _files(generation: str, root: Path, release: str, packages: dict[str, str]) -> KernelFiles:
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
