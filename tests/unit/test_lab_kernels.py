"""lab/kernels.py without the network: release choice, package sets, module
decompression, BCC flags, and the cache marker."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.lab import kernel_archive, kernels
from pageref.lab.kernel_archive import (
    CLASSIC_LAYOUT,
    SECURITY_URI,
    SPLIT_LAYOUT,
    AptSource,
    PrivateApt,
    parse_policy,
    resolve,
)
from pageref.lab.kernels import KernelFiles

RECORDED = Path(__file__).parents[1] / "fixtures" / "lab" / "apt-policy-kernels.txt"


def recorded() -> dict[str, str | None]:
    """`apt-cache policy` of every amd64 linux-binary-/linux-image- name of
    trixie, trixie-backports, sid and bullseye-security, recorded 2026-12-02."""
    return parse_policy(RECORDED.read_text())


class FakeApt:
    """What apt-cache answers, from a dict of name -> (version, depends)."""

    suites = ("trixie", "sid")

    def __init__(self, archive: dict[str, tuple[str, list[str]]]) -> None:
        self.archive = archive

    def candidates(self, names) -> dict[str, str | None]:
        return {n: self.archive[n][0] if n in self.archive else None for n in names}

    def candidate(self, name: str) -> str | None:
        return self.archive[name][0] if name in self.archive else None

    def kernel_candidates(self) -> dict[str, str | None]:
        return {n: v for n, (v, _) in self.archive.items()}

    def depends(self, name: str, version: str) -> list[str]:
        return self.archive[name][1]


def test_policy_parsed_from_the_recorded_archive() -> None:
    c = recorded()
    assert c["linux-image-5.10.0-46-amd64"] == "5.10.262-1"
    assert c["linux-binary-7.3.4+deb13-amd64"] == "7.3.4-1~bpo13+1"
    assert parse_policy("linux-image-6.12.94+deb13-amd64:\n  Installed: (none)\n"
                        "  Candidate: (none)\n") == {"linux-image-6.12.94+deb13-amd64": None}


@pytest.mark.parametrize(("gen", "release", "package", "version"), [
    ("5.10", "5.10.0-46-amd64", "linux-image-5.10.0-46-amd64", "5.10.262-1"),
    ("6.12", "6.12.117+deb13-amd64", "linux-image-6.12.117+deb13-amd64", "6.12.117-1"),
    # sid's 7.2.13+deb14 beats trixie-backports' 7.2.12+deb13
    ("7.2", "7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-amd64", "7.2.13-1"),
    # 7.3.4 (backports) beats 7.2.13+deb14 (sid): the release, not the suite, decides
    ("newest", "7.3.4+deb13-amd64", "linux-binary-7.3.4+deb13-amd64", "7.3.4-1~bpo13+1"),
])
def test_newest_build_of_each_series(gen: str, release: str, package: str,
                                     version: str) -> None:
    got = resolve(recorded(), kernels.SERIES[gen])
    assert got is not None
    assert (got.release, got.image_package, got.version) == (release, package, version)


def test_layout_detected_from_the_archive_not_the_version() -> None:
    c = recorded()
    assert resolve(c, kernels.SERIES["5.10"]).layout == CLASSIC_LAYOUT
    assert resolve(c, kernels.SERIES["6.12"]).layout == CLASSIC_LAYOUT
    # 7.3 has both linux-image- (an empty meta package) and linux-binary-
    assert c["linux-image-7.3.4+deb13-amd64"] is not None
    assert resolve(c, kernels.SERIES["newest"]).layout == SPLIT_LAYOUT
    # a 6.19 with only the split packages is split too
    six19 = resolve(c, r"6\.19\.\d+\+deb\d+-amd64")
    assert six19 is not None and six19.layout == SPLIT_LAYOUT


def test_build_without_candidate_is_skipped() -> None:
    # Names apt only knows from other packages' relations have no candidate:
    # a build that left the archive must never be chosen.
    c = recorded()
    c["linux-image-5.10.0-46-amd64"] = None
    got = resolve(c, kernels.SERIES["5.10"])
    assert got is not None and got.release == "5.10.0-45-amd64"


def test_other_flavours_and_series_never_match() -> None:
    c = {"linux-image-5.10.0-46-amd64-unsigned": "5.10.262-1",
         "linux-image-5.10.0-46-rt-amd64": "5.10.262-1",
         "linux-image-5.10.0-46-amd64-dbg": "5.10.262-1",
         "linux-image-6.1.0-40-amd64": "6.1.150-1"}
    assert resolve(c, kernels.SERIES["5.10"]) is None


def test_series_gone_is_a_user_error() -> None:
    apt = FakeApt({"linux-binary-7.3.1+deb14-amd64": ("7.3.1-1", [])})
    with pytest.raises(PagerefError, match="no 7.2 kernel"):
        kernels._choose_release(apt, "7.2")


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
    found = kernels._choose_release(apt, "7.2")
    got = kernels._package_set(apt, found)
    assert sorted(got) == sorted(
        [f"linux-binary-{rel}", f"linux-modules-{rel}", f"linux-base-{rel}",
         f"linux-headers-{rel}", "linux-headers-7.2.13+deb14-common",
         "linux-kbuild-7.2.13+deb14"]
    )
    assert set(got.values()) == {"7.2.13-1"}


def test_package_set_5_10_kbuild_without_release_suffix() -> None:
    # bullseye's headers depend on linux-kbuild-5.10 (no ABI number) and on a
    # compiler package the lab does not need.
    rel = "5.10.0-46-amd64"
    v = "5.10.262-1"
    apt = FakeApt({
        f"linux-image-{rel}": (v, []),
        f"linux-headers-{rel}": (v, ["linux-headers-5.10.0-46-common", "linux-kbuild-5.10",
                                     "linux-compiler-gcc-10-x86"]),
        "linux-headers-5.10.0-46-common": (v, []),
        "linux-kbuild-5.10": (v, []),
    })
    got = kernels._package_set(apt, kernels._choose_release(apt, "5.10"))
    assert sorted(got) == sorted([f"linux-image-{rel}", f"linux-headers-{rel}",
                                  "linux-headers-5.10.0-46-common", "linux-kbuild-5.10"])


def test_unknown_generation() -> None:
    with pytest.raises(PagerefError, match="choose one of 5.10, 6.1, 6.12, 7.2, newest"):
        kernels.ensure_kernel("4.19")


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
    uri = kernel_archive.host_debian_mirror()
    assert uri.startswith(("http://", "https://", "file:/")) and "security" not in uri


def test_private_sources_list(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path / "apt", mirror="http://mirror.example/debian")
    apt._write_config()
    lines = (tmp_path / "apt" / "sources.list").read_text().splitlines()
    debs = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("deb ")]
    assert debs == [
        "http://mirror.example/debian trixie main",
        "http://mirror.example/debian trixie-backports main",
        "http://mirror.example/debian sid main",
        # a security suite is not on the mirrors: its own URI line
        f"{SECURITY_URI} bullseye-security main",
    ]


def test_unreachable_archive_is_one_clear_error(tmp_path: Path) -> None:
    # Nothing listens on the discard port of the loopback address.
    apt = PrivateApt(tmp_path / "apt", retries=0, mirror="http://127.0.0.1:9/debian",
                     sources=(AptSource("mirror", "trixie"),
                              AptSource("http://127.0.0.1:9/debian-security", "bullseye-security")))
    with pytest.raises(PagerefError,
                       match="cannot read the Debian archive's trixie/bullseye-security lists"):
        apt.update()
    # The private configuration names only our suites, in our own directory.
    text = (tmp_path / "apt" / "sources.list").read_text()
    assert "trixie main" in text and "bullseye-security main" in text
