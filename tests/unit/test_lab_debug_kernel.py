"""lab/debug_config.py and lab/debug_kernel.py without building anything: the config fragment, the
cache key, generation names, and the cached build's lookup."""

from __future__ import annotations

import json
import shlex
from importlib import resources
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.lab import debug_config as dc
from pageref.lab import debug_kernel as dk
from pageref.lab import kernels

VERSION = "6.12.118-1~deb12u1"


def test_generation_names() -> None:
    assert dc.debug_series("6.12-debug") == "6.12"
    assert dc.debug_series("6.12") is None
    assert dc.debug_series("7.2-debug") is None  # no source package for it
    assert dc.debug_series("newest") is None
    assert "6.12-debug" in kernels.GENERATIONS
    # offered, but not booted by the lab tests and CI until its budget is measured
    assert "6.12-debug" not in kernels.DEFAULT_LAB_KERNELS


def test_fragment_renders_as_kconfig_writes_it() -> None:
    text = dc.render_fragment([("DEBUG_PAGE_REF", "y"), ("TEST_HMM", "m"), ("XEN", "n"),
                               ("LOCALVERSION", '"-x"')])
    assert text == ("CONFIG_DEBUG_PAGE_REF=y\nCONFIG_TEST_HMM=m\n# CONFIG_XEN is not set\n"
                    'CONFIG_LOCALVERSION="-x"\n')


def test_fragment_has_what_issue_15_asks_for() -> None:
    opts = dict(dc.FRAGMENT)
    assert (opts["DEBUG_PAGE_REF"], opts["DEVICE_PRIVATE"], opts["TEST_HMM"],
            opts["GUP_TEST"], opts["DEBUG_INFO_BTF"]) == ("y", "y", "m", "y", "y")
    assert len(opts) == len(dc.FRAGMENT), "an option is set twice"
    assert "test_hmm" in dc.MODULES and set(dc.MODULES) <= set(dc.GUEST_MODULES)
    # the modules the lab must load as modules are the fragment's only "m"s
    assert {n for n, v in dc.FRAGMENT if v == "m"} == {"TEST_HMM", "BLK_DEV_RAM"}
    assert dc.BASE_TARGET == "allnoconfig" and "-fno-var-tracking" in dc.KCFLAGS


def _modprobed(script: str) -> set[str]:
    """The module names a shell script modprobes (options and parameters left out)."""
    names: set[str] = set()
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line.split("#", 1)[0].split("||", 1)[0]) if "modprobe" in line else []
        if "modprobe" not in words:
            continue
        for w in words[words.index("modprobe") + 1:]:
            if not w.startswith("-") and "=" not in w and not w[:1].isdigit() and ">" not in w:
                names.add(w.replace("-", "_"))
    return names


def test_guest_modules_are_what_the_lab_loads() -> None:
    """Every module stage one insmods, stage two and the RDMA clients modprobe
    is one the debug build must provide (checked against modules.builtin and
    modules.dep after it)."""
    from pageref.lab import initramfs

    stage2 = resources.files("pageref.lab").joinpath("stage2.sh").read_text()
    rdma = resources.files("pageref.workloads").joinpath("rdma-clients.sh").read_text()
    wanted = set(initramfs.STAGE_ONE_MODULES) | _modprobed(stage2) | _modprobed(rdma)
    assert {"libnvdimm", "nd_e820", "xfs", "brd", "device_dax", "rdma_rxe"} <= wanted
    assert wanted <= set(dc.GUEST_MODULES), wanted - set(dc.GUEST_MODULES)


def test_module_mismatches() -> None:
    builtin = "kernel/fs/9p/9p.ko\nkernel/drivers/block/brd.ko\n"
    dep = ("kernel/lib/test_hmm.ko:\nkernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\n"
           "kernel/drivers/md/dm-delay.ko:\n")
    assert dc.module_mismatches(builtin, dep, ["9p", "xfs", "dm_delay", "test_hmm"],
                                ["test_hmm"]) == []
    assert dc.module_mismatches(builtin, dep, ["9p", "overlay", "brd"], ["brd", "test_hmm"]) == [
        "overlay: neither built in nor a module", "brd: built in, the lab needs it as a module"]


def test_mismatches_name_what_kconfig_refused() -> None:
    resolved = "CONFIG_DEBUG_PAGE_REF=y\nCONFIG_MODULE_SIG=y\n# CONFIG_XEN is not set\n"
    assert dc.config_mismatches(resolved, [("DEBUG_PAGE_REF", "y"), ("XEN", "n")]) == []
    assert dc.config_mismatches(resolved, [("MODULE_SIG", "n"), ("TEST_HMM", "m"),
                                           ("GONE", "n")]) == [
        "CONFIG_MODULE_SIG: wanted n, got y", "CONFIG_TEST_HMM: wanted m, got n"]


def test_cache_key() -> None:
    key = dc.cache_key(VERSION)
    assert key.startswith(VERSION + "-") and len(key) == len(VERSION) + 13
    assert key == dc.cache_key(VERSION)  # stable
    others = {
        dc.cache_key("6.12.119-1~deb12u1"),
        dc.cache_key(VERSION, dc.render_fragment([*dc.FRAGMENT, ("KASAN", "y")])),
        dc.cache_key(VERSION, base="tinyconfig"),
        dc.cache_key(VERSION, kcflags=""),
    }
    assert key not in others and len(others) == 4
    # the build of BUILD_FORMAT 1 (Debian's cloud config + localmodconfig) is
    # not taken for this one: its key, as that version computed it, differs
    assert not key.endswith("848616a8e31a")


def test_progress_step() -> None:
    assert dc.build_step("  CC      mm/gup.o") == "CC mm/gup.o"
    assert dc.build_step("") == ""


def test_missing_packages_named(monkeypatch) -> None:
    monkeypatch.setattr(dk.shutil, "which", lambda t: None if t in ("flex", "pahole") else t)
    monkeypatch.setattr(dk, "BUILD_HEADERS", {})
    assert dk.missing_packages() == ["dwarves", "flex"]
    monkeypatch.setattr(dk, "cached_debug_kernel", lambda g: None)
    with pytest.raises(PagerefError, match=r"needs Debian packages dwarves flex; run bin/setup"):
        dk.build_debug_kernel("6.12-debug")


def _fake_build(cache: Path, key: str, release: str) -> Path:
    root = cache / "kernels" / "6.12-debug" / key / "root"
    mods = root / "lib" / "modules" / release
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("")
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{release}").write_bytes(b"")
    (root / "usr" / "src" / f"linux-headers-{release}").mkdir(parents=True)
    marker = {"format": dc.BUILD_FORMAT, "generation": "6.12-debug", "release": release,
              "root": str(root), "packages": {"linux-source-6.12": VERSION}}
    (root.parent / "complete.json").write_text(json.dumps(marker))
    return root


def test_lab_uses_the_cached_build_and_never_builds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PAGEREF_SHARED_CACHE", str(tmp_path))
    monkeypatch.setattr(dk, "source_version", lambda src: VERSION)
    with pytest.raises(PagerefError, match=r"not built.*pageref lab kernels --debug"):
        kernels.ensure_kernel("6.12-debug")
    release = "6.12.118-pageref-debug"
    key = dc.cache_key(VERSION)
    root = _fake_build(tmp_path, key, release)
    kf = kernels.ensure_kernel("6.12-debug")
    assert (kf.release, kf.root, kf.generation) == (release, root, "6.12-debug")
    assert kf.headers_dir == root / "usr" / "src" / f"linux-headers-{release}"
    # a second "build" only checks
    assert dk.build_debug_kernel("6.12-debug") == (kf, False)
    # another source version is another key: not built
    monkeypatch.setattr(dk, "source_version", lambda src: "6.12.119-1~deb12u1")
    assert dk.cached_debug_kernel("6.12-debug") is None


def test_source_package_missing_is_one_line(monkeypatch) -> None:
    class R:
        returncode, stdout = 1, ""

    monkeypatch.setattr(dk.subprocess, "run", lambda *a, **k: R())
    with pytest.raises(PagerefError, match=r"^linux-source-6.12 is not installed .*bin/setup"):
        dk.source_version(dc.SOURCES["6.12"])
