"""The lab's debug kernel (issue 15): Debian's own 6.12 source, built here with
the page_ref tracepoints, device-private pages, test_hmm and the GUP test harness.

Debian builds none of CONFIG_DEBUG_PAGE_REF, CONFIG_DEVICE_PRIVATE,
CONFIG_TEST_HMM and CONFIG_GUP_TEST, so no stock kernel has the kernel's own
record of every refcount change (the `page_ref:*` tracepoints), device-private
pages or /sys/kernel/debug/gup_test. `build_debug_kernel("6.12-debug")` builds
one from the `linux-source-6.12` package (the Debian-patched tarball in
/usr/src; nothing is downloaded) into the layout kernels.py unpacks a Debian
generation into: root/boot/vmlinuz-<release>, root/lib/modules/<release> (plain
.ko, modules.dep), root/usr/src/linux-headers-<release> for BCC.

Config: the kernel's own `make allnoconfig` given debug_config.FRAGMENT as
its KCONFIG_ALLCONFIG: every option the lab guest and the tracer need (the
guest's drivers and file systems built in, test_hmm and brd as modules), the
mm choices of Debian's own 6.12 that shape struct page and the paths the
tracer probes, and nothing else; every fragment option is checked after
Kconfig, and the built modules against what the guest loads
(debug_config.GUEST_MODULES). Why not Debian's config: its cloud flavour,
trimmed by localmodconfig to the lab's modules (BUILD_FORMAT 1), still
compiled 2,759 objects, 80 min on two loaded cores; CI needs the build and
the lab on it within the hour. CONFIG_DEBUG_INFO stays (BTF needs DWARF's
types), without variable tracking (debug_config.KCFLAGS). Measured in
docs/lab.md.

The build is cached in shared_cache_dir() (outside the checkout: every clone
on the machine reuses it), under a key made of the source package's version
and a hash of the base target, fragment and flags (debug_config.cache_key); a second call finds
complete.json there and only checks. The object tree of a source version is
kept, so a changed fragment rebuilds only what it touches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pageref.errors import PagerefError
from pageref.lab.debug_config import (
    BASE_TARGET,
    BUILD_FORMAT,
    DEBUG_GENERATIONS,
    GUEST_MODULES,
    KCFLAGS,
    SOURCES,
    DebugSource,
    build_step,
    cache_key,
    config_mismatches,
    debug_series,
    module_mismatches,
    render_fragment,
)
from pageref.lab.paths import shared_cache_dir

if TYPE_CHECKING:
    from pageref.lab.kernels import KernelFiles

# Host tool -> the Debian package that brings it (bin/setup installs them all).
BUILD_TOOLS: dict[str, str] = {
    "make": "make", "gcc": "gcc", "flex": "flex", "bison": "bison", "bc": "bc",
    "perl": "perl", "pahole": "dwarves", "depmod": "kmod", "xz": "xz-utils",
}
# Headers the build's host programs include (objtool and resolve_btfids: libelf;
# sign-file and extract-cert: openssl).
BUILD_HEADERS: dict[str, str] = {
    "/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev",
}



def _progress(msg: str) -> None:
    print(f"pageref lab: {msg}", file=sys.stderr, flush=True)



def missing_packages() -> list[str]:
    """Debian packages the build needs and the host lacks, one per missing tool."""
    missing = [pkg for tool, pkg in BUILD_TOOLS.items()
               if shutil.which(tool) is None and not Path("/sbin", tool).exists()]
    missing += [pkg for path, pkg in BUILD_HEADERS.items() if not Path(path).exists()]
    return sorted(set(missing))


def source_version(src: DebugSource) -> str:
    """The installed version of the source package (part of the cache key)."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", src.source_package],
                       capture_output=True, text=True)
    m = re.fullmatch(r"install ok installed (\S+)", r.stdout.strip())
    if r.returncode != 0 or not m or not src.tarball.is_file():
        raise PagerefError(f"{src.source_package} is not installed ({src.tarball}); "
                           f"run bin/setup or apt-get install {src.source_package}")
    return m.group(1)


def debug_dir(generation: str) -> Path:
    return shared_cache_dir() / "kernels" / generation


def _key_for(generation: str) -> tuple[DebugSource, str, str]:
    series = debug_series(generation)
    if series is None:
        raise PagerefError(f"{generation!r} is not a debug lab kernel; "
                           f"choose one of {', '.join(DEBUG_GENERATIONS)}")
    src = SOURCES[series]
    version = source_version(src)
    return src, version, cache_key(version)


def cached_debug_kernel(generation: str) -> KernelFiles | None:
    """The finished build for today's source version and fragment, or None."""
    _, _, key = _key_for(generation)
    marker = debug_dir(generation) / key / "complete.json"
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    from pageref.lab.kernels import kernel_files

    root = Path(info["root"])
    if info.get("format") != BUILD_FORMAT or not root.is_dir():
        return None
    kf = kernel_files(generation, root, info["release"], info["packages"])
    return kf if (kf.modules_dir / "modules.dep").is_file() else None


def ensure_debug_kernel(generation: str) -> KernelFiles:
    """The built debug kernel; never builds (minutes): says how to build it."""
    kf = cached_debug_kernel(generation)
    if kf is None:
        raise PagerefError(f"the {generation} lab kernel is not built on this machine; "
                           "`pageref lab kernels --debug` builds it "
                           "(about 10 min on 2 quiet cores)")
    return kf


class _Steps:
    """Names the running step and its elapsed time on stderr, every `every` s."""

    def __init__(self, generation: str, every: float = 60.0) -> None:
        self.generation, self.every = generation, every
        self.t0 = time.monotonic()
        self.times: dict[str, float] = {}

    def run(self, step: str, argv: list[str], log: Path, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> None:
        _progress(f"kernel {self.generation}: {step} (log {log})")
        t = time.monotonic()
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
            done = threading.Event()
            watcher = threading.Thread(target=self._watch, args=(step, log, t, done),
                                       daemon=True)
            watcher.start()
            rc = proc.wait()
            done.set()
        self.times[step] = round(time.monotonic() - t, 1)
        if rc != 0:
            tail = [ln for ln in log.read_text(errors="replace").splitlines()
                    if "error" in ln.lower()][-1:] or ["(see the log)"]
            raise PagerefError(f"kernel {self.generation}: {step} failed (exit {rc}): "
                               f"{tail[0].strip()}; log {log}")

    def _watch(self, step: str, log: Path, t: float, done: threading.Event) -> None:
        while not done.wait(self.every):
            last = ""
            try:
                with open(log, "rb") as f:
                    f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                    lines = f.read().decode(errors="replace").splitlines()
                last = build_step(lines[-1]) if lines else ""
            except OSError:
                pass
            at = f", at {last}" if last else ""
            _progress(f"kernel {self.generation}: {step}: {_mins(time.monotonic() - t)} "
                      f"(total {_mins(time.monotonic() - self.t0)}){at}")


def _mins(seconds: float) -> str:
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def build_debug_kernel(generation: str, jobs: int | None = None) -> tuple[KernelFiles, bool]:
    """Build `generation` unless today's key is built; (kernel, whether built now)."""
    kf = cached_debug_kernel(generation)
    if kf is not None:
        _progress(f"kernel {generation}: {kf.release} already built ({kf.root})")
        return kf, False
    missing = missing_packages()
    if missing:
        raise PagerefError(f"building the {generation} lab kernel needs Debian packages "
                           f"{' '.join(missing)}; run bin/setup (or apt-get install them)")
    src, version, key = _key_for(generation)
    base = debug_dir(generation)
    srcdir = _extract(src, version, base / "src" / version, generation)
    obj = base / "obj" / version  # kept: a new fragment rebuilds only what changed
    obj.mkdir(parents=True, exist_ok=True)
    out = base / key
    out.mkdir(parents=True, exist_ok=True)
    log = out / "build.log"
    log.unlink(missing_ok=True)
    steps = _Steps(generation)
    make = ["make", "-C", str(srcdir), f"O={obj}"]
    jobs = jobs or os.cpu_count() or 2
    configure(make, obj, steps, log)
    steps.run(f"make -j{jobs} bzImage modules",
              [*make, f"-j{jobs}", f"KCFLAGS={KCFLAGS}", "bzImage", "modules"], log)
    # Only the build knows it: `make kernelrelease` before it reads an
    # auto.conf that syncconfig has not yet given CONFIG_LOCALVERSION.
    release = (obj / "include" / "config" / "kernel.release").read_text().strip()

    root = out / "root"
    if root.exists():
        shutil.rmtree(root)
    steps.run("modules_install", [*make, f"INSTALL_MOD_PATH={root}", "INSTALL_MOD_STRIP=1",
                                  "modules_install"], log)
    _install(srcdir, obj, root, release, steps, log)
    mods = root / "lib" / "modules" / release
    bad = module_mismatches((mods / "modules.builtin").read_text(),
                            (mods / "modules.dep").read_text())
    if bad:
        raise PagerefError(f"kernel {generation}: the lab guest could not load what it "
                           f"needs: {'; '.join(bad)} (see {obj / '.config'})")

    from pageref.lab.kernels import kernel_files

    packages = {src.source_package: version}
    kf = kernel_files(generation, root, release, packages)
    marker = {
        "format": BUILD_FORMAT, "generation": generation, "release": release,
        "root": str(root), "key": key, "packages": packages,
        "base": BASE_TARGET, "fragment": render_fragment(), "kcflags": KCFLAGS,
        "guest_modules": list(GUEST_MODULES), "jobs": jobs, "step_seconds": steps.times,
        "build_seconds": round(time.monotonic() - steps.t0, 1),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "complete.json").write_text(json.dumps(marker, indent=1) + "\n")
    _progress(f"kernel {generation}: {release} built in {_mins(time.monotonic() - steps.t0)} "
              f"({root})")
    return kf, True


def configure(make: list[str], obj: Path, steps: _Steps, log: Path) -> None:
    """allnoconfig with the fragment as its KCONFIG_ALLCONFIG, checked
    (rewriting an unchanged .config costs the next make nothing: objects
    depend on the symbols they use, through include/config/)."""
    allconfig = obj / "pageref.config"
    allconfig.write_text(render_fragment())
    steps.run(BASE_TARGET, [*make, f"KCONFIG_ALLCONFIG={allconfig}", BASE_TARGET], log)
    bad = config_mismatches((obj / ".config").read_text())
    if bad:
        raise PagerefError(f"kernel {steps.generation}: Kconfig did not take the fragment: "
                           f"{'; '.join(bad)} (see {obj / '.config'})")


def _extract(src: DebugSource, version: str, dest: Path, generation: str) -> Path:
    """Unpack the source tarball once per version (a marker says it finished)."""
    tree = dest / src.source_package
    done = dest / ".pageref-extracted"
    if done.exists() and (tree / "Makefile").is_file():
        return tree
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _progress(f"kernel {generation}: unpacking {src.tarball} ({version})")
    t = time.monotonic()
    subprocess.run(["tar", "-xJf", str(src.tarball), "-C", str(dest)], check=True)
    if not (tree / "Makefile").is_file():
        raise PagerefError(f"{src.tarball} did not unpack to {tree}")
    done.write_text(version + "\n")
    _progress(f"kernel {generation}: unpacked in {_mins(time.monotonic() - t)}")
    return tree


def _install(srcdir: Path, obj: Path, root: Path, release: str, steps: _Steps,
             log: Path) -> None:
    """Image, System.map and config into root/boot; the headers BCC needs into
    root/usr/src/linux-headers-<release> (what Debian's headers package holds,
    made by the same script its build uses) with build -> them, relatively."""
    boot = root / "boot"
    boot.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(obj / "arch/x86/boot/bzImage", boot / f"vmlinuz-{release}")
    shutil.copyfile(obj / "System.map", boot / f"System.map-{release}")
    shutil.copyfile(obj / ".config", boot / f"config-{release}")
    headers = root / "usr" / "src" / f"linux-headers-{release}"
    env = dict(os.environ, srctree=str(srcdir), SRCARCH="x86", CC="gcc", HOSTCC="gcc",
               MAKE="make")
    steps.run("headers", ["sh", str(srcdir / "scripts/package/install-extmod-build"),
                          str(headers)], log, cwd=obj, env=env)
    shutil.copyfile(obj / ".config", headers / ".config")
    mods = root / "lib" / "modules" / release
    for name in ("build", "source"):
        (mods / name).unlink(missing_ok=True)
    (mods / "build").symlink_to(os.path.relpath(headers, mods))
