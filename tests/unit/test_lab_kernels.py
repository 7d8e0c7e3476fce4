"""lab/kernels.py without the network: release choice, package sets, module
decompression, BCC flags, and the cache marker."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.lab import kernels
from pageref.lab.kernels import _SPECS, KernelFiles


class FakeApt:
    """What apt-cache answers, from a dict of name -> (version, depends)."""

    def __init__(self, archive: dict[str, tuple[str, list[str]]]) -> None:
        self.archive = archive

    def candidate(self, name: str) -> str | None:
        return self.archive[name][0] if name in self.archive else None

    def cache(self, *args: str) -> str:
        assert args[0] == "pkgnames"
        return "\n".join(n for n in self.archive if n.startswith(args[1]))

    def depends(self, name: str, version: str) -> list[str]:
        return self.archive[name][1]


def test_pinned_release_used_while_in_archive() -> None:
    apt = FakeApt({"linux-image-6.12.107+deb13-amd64": ("6.12.107-1", [])})
    assert kernels._choose_release(apt, _SPECS["6.12"], "6.12") == "6.12.107+deb13-amd64"


def test_newest_of_series_when_pin_left_archive() -> None:
    apt = FakeApt(
        {
            "linux-binary-7.2.9+deb14-amd64": ("7.2.9-1", []),
            "linux-binary-7.2.20+deb14-amd64": ("7.2.20-1", []),
            "linux-binary-7.2.20+deb14-rt-amd64": ("7.2.20-1", []),  # not ours
            "linux-binary-7.3.1+deb14-amd64": ("7.3.1-1", []),  # another series
        }
    )
    assert kernels._choose_release(apt, _SPECS["7.2"], "7.2") == "7.2.20+deb14-amd64"


def test_series_gone_is_a_user_error() -> None:
    apt = FakeApt({"linux-binary-7.3.1+deb14-amd64": ("7.3.1-1", [])})
    with pytest.raises(PagerefError, match="no 7.2 kernel"):
        kernels._choose_release(apt, _SPECS["7.2"], "7.2")


def test_package_set_takes_common_and_kbuild_from_depends() -> None:
    rel = "7.2.13+deb14-amd64"
    apt = FakeApt(
        {
            f"linux-binary-{rel}": ("7.2.13-1", []),
            f"linux-modules-{rel}": ("7.2.13-1", []),
            f"linux-base-{rel}": ("7.2.13-1", []),
            f"linux-headers-{rel}": (
                "7.2.13-1",
                ["gcc-16-for-host", "linux-base", f"linux-base-{rel}",
                 "linux-headers-7.2.13+deb14-common", "linux-kbuild-7.2.13+deb14"],
            ),
            "linux-headers-7.2.13+deb14-common": ("7.2.13-1", []),
            "linux-kbuild-7.2.13+deb14": ("7.2.13-1", []),
        }
    )
    got = kernels._package_set(apt, _SPECS["7.2"], rel)
    assert sorted(got) == sorted(
        [f"linux-binary-{rel}", f"linux-modules-{rel}", f"linux-base-{rel}",
         f"linux-headers-{rel}", "linux-headers-7.2.13+deb14-common",
         "linux-kbuild-7.2.13+deb14"]
    )
    assert set(got.values()) == {"7.2.13-1"}


def test_unknown_generation() -> None:
    with pytest.raises(PagerefError, match="choose one of 6.1, 6.12, 7.2"):
        kernels.ensure_kernel("5.10")


def test_decompress_modules(tmp_path: Path) -> None:
    (tmp_path / "kernel" / "fs").mkdir(parents=True)
    (tmp_path / "kernel" / "fs" / "9p.ko.xz").write_bytes(lzma.compress(b"\x7fELFnine"))
    (tmp_path / "kernel" / "plain.ko").write_bytes(b"\x7fELFplain")
    assert kernels.decompress_modules(tmp_path) == 1
    assert (tmp_path / "kernel" / "fs" / "9p.ko").read_bytes() == b"\x7fELFnine"
    assert not (tmp_path / "kernel" / "fs" / "9p.ko.xz").exists()


def test_bcc_cflags_from_headers_config(tmp_path: Path) -> None:
    conf = tmp_path / "include" / "config"
    conf.mkdir(parents=True)
    (conf / "auto.conf").write_text("CONFIG_X86=y\n")
    assert kernels._bcc_cflags(tmp_path) == []
    (conf / "auto.conf").write_text('CONFIG_X86=y\nCONFIG_CC_MS_EXTENSIONS="-fms-extensions"\n')
    assert kernels._bcc_cflags(tmp_path) == ["-fms-extensions", "-Wno-microsoft-anon-tag"]
    assert kernels._bcc_cflags(None) == []


def test_placeholder_system_map_is_none(tmp_path: Path) -> None:
    p = tmp_path / "System.map"
    p.write_text("ffffffffffffffff B The real System.map is in the linux-image-X-dbg package\n")
    assert kernels._real_system_map(p) is None
    p.write_text("ffffffff81000000 T _text\n" * 400)
    assert kernels._real_system_map(p) == p


def test_marker_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEREF_LAB_CACHE", str(tmp_path))
    rel = "6.12.107+deb13-amd64"
    root = tmp_path / "kernels" / "6.12" / "root"
    mods = root / "lib" / "modules" / rel
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("")
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{rel}").write_bytes(b"MZ")
    marker = {"format": kernels._CACHE_FORMAT, "generation": "6.12", "release": rel,
              "root": str(root), "packages": {"linux-image-" + rel: "6.12.107-1"}}
    (tmp_path / "kernels" / "6.12" / "complete.json").write_text(json.dumps(marker))
    kf = kernels.ensure_kernel("6.12")  # no network: served from the marker
    assert isinstance(kf, KernelFiles)
    assert kf.release == rel and kf.vmlinuz == root / "boot" / f"vmlinuz-{rel}"
    assert kf.headers_dir is None and kf.modules_dir == mods


def test_mirror_from_host_sources() -> None:
    # The host's real sources: a Debian mirror serving bookworm must be found.
    uri = kernels.host_debian_mirror()
    assert uri.startswith(("http://", "https://", "file:/")) and "security" not in uri


def test_unreachable_archive_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on the discard port of the loopback address.
    monkeypatch.setattr(kernels, "host_debian_mirror", lambda: "http://127.0.0.1:9/debian")
    apt = kernels.PrivateApt(tmp_path / "apt", retries=0)
    with pytest.raises(PagerefError, match="cannot read the Debian archive's trixie/sid lists"):
        apt.update()
    # The private configuration names only our suites, in our own directory.
    text = (tmp_path / "apt" / "sources.list").read_text()
    assert "trixie main" in text and "sid main" in text
