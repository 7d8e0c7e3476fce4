"""Which Debian kernel build a lab generation takes today, and how apt fetches it.

Debian drops superseded kernel builds from its archive (6.12.94+deb13 left
trixie when 6.12.107 arrived), so the lab never pins a build: each generation
names a SERIES (a release pattern), and `resolve()` takes the newest build of
that series the archive serves now. The archive is read through a PRIVATE apt
configuration (`PrivateApt`: its own sources list, lists and cache under
lab-cache/apt/, an empty dpkg status): the host's apt sources are never used or
touched, and nothing is `dpkg -i`'d.

`resolve()` is a pure function of what `apt-cache policy` answered (so the
unit tests feed it recorded answers): a build counts only when its package
has a candidate version (apt-cache pkgnames also lists names that are merely
referenced by other packages' Depends/Breaks, e.g. 6.12.94+deb13 after it
left the archive). The package layout is detected from what the archive has,
not from the version: from 6.19 Debian splits a kernel into linux-binary-
(the image), linux-modules- and linux-base-, and linux-image- becomes an
empty meta package.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pageref.errors import PagerefError

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Security suites live on their own host, not on the mirrors (Debian's
# sources.list documentation); bullseye's kernel updates are only there.
SECURITY_URI = "http://security.debian.org/debian-security"

# Package names of the two layouts, by the prefix the release follows.
SPLIT_LAYOUT = ("linux-binary-", "linux-modules-", "linux-base-", "linux-headers-")
CLASSIC_LAYOUT = ("linux-image-", "linux-headers-")


@dataclass(frozen=True)
class AptSource:
    """One `deb` line of the private sources list."""

    uri: str  # "mirror" means: the host's own Debian mirror
    suite: str

    def line(self, mirror: str) -> str:
        uri = mirror if self.uri == "mirror" else self.uri
        return f"deb [signed-by={KEYRING}] {uri} {self.suite} main"


# Every suite a lab generation comes from (one `apt-get update` reads them all).
ARCHIVE: tuple[AptSource, ...] = (
    AptSource("mirror", "trixie"),
    AptSource("mirror", "trixie-backports"),
    AptSource("mirror", "sid"),
    AptSource(SECURITY_URI, "bullseye-security"),
)


@dataclass(frozen=True)
class Resolved:
    """The build a generation took: its release and the packages that carry it."""

    release: str  # `uname -r`, e.g. "5.10.0-46-amd64"
    image_package: str  # the package holding the image (linux-image- or linux-binary-)
    version: str  # its Debian version, e.g. "5.10.262-1"
    layout: tuple[str, ...]  # per-release package prefixes to download


def _progress(msg: str) -> None:
    print(f"pageref lab: {msg}", file=sys.stderr, flush=True)


def release_key(release: str) -> tuple[int, ...]:
    """Numeric order of releases: 5.10.0-46 > 5.10.0-45, 7.3.4+deb13 > 7.2.13+deb14."""
    return tuple(int(n) for n in re.findall(r"\d+", release))


def parse_policy(text: str) -> dict[str, str | None]:
    """`apt-cache policy A B ...` output -> {package: candidate version or None}."""
    out: dict[str, str | None] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^(\S+):$", line)
        if m:
            name = m.group(1)
            out[name] = None
            continue
        m = re.match(r"^\s+Candidate:\s*(\S+)", line)
        if m and name is not None:
            out[name] = None if m.group(1) == "(none)" else m.group(1)
    return out


def resolve(candidates: Mapping[str, str | None], release_re: str) -> Resolved | None:
    """The newest release matching `release_re` (whole name) that the archive
    serves, from {package: candidate} of linux-binary-*/linux-image-* names."""
    pat = re.compile(r"linux-(binary|image)-(" + release_re + r")")
    layouts: dict[str, Resolved] = {}
    for name, version in candidates.items():
        m = pat.fullmatch(name)
        if not m or version is None:
            continue
        release = m.group(2)
        split = m.group(1) == "binary"
        if split or release not in layouts:  # linux-binary- wins over the meta linux-image-
            layouts[release] = Resolved(release, name, version,
                                        SPLIT_LAYOUT if split else CLASSIC_LAYOUT)
    if not layouts:
        return None
    return layouts[max(layouts, key=release_key)]


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache under lab-cache/apt/.

    Dir::State::status=/dev/null: resolution ignores what the host has installed,
    and nothing here can change the host's dpkg database.
    """

    def __init__(self, base: Path, sources: Sequence[AptSource] = ARCHIVE,
                 retries: int | None = None, mirror: str | None = None) -> None:
        self.base = base
        self.sources = tuple(sources)
        self.retries = retries  # None: apt's default (a few, with back-off)
        self.mirror = mirror
        self._updated = False

    @property
    def suites(self) -> tuple[str, ...]:
        return tuple(s.suite for s in self.sources)

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

    def _mirror(self) -> str:
        if self.mirror is None:
            self.mirror = host_debian_mirror()
        return self.mirror

    def _write_config(self) -> None:
        for d in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        lines = [s.line(self._mirror()) for s in self.sources]
        text = "# pageref lab: kernels only; never used by the host's apt\n" + "\n".join(lines)
        path = self.base / "sources.list"
        if not path.exists() or path.read_text() != text + "\n":
            path.write_text(text + "\n")

    def update(self) -> None:
        if self._updated:
            return
        self._write_config()
        _progress(f"reading the {', '.join(self.suites)} package lists ({self._mirror()})")
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
                f"({detail or 'apt-get update failed'}); the lab's downloaded kernels "
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

    def candidates(self, packages: Iterable[str]) -> dict[str, str | None]:
        names = sorted(set(packages))
        return parse_policy(self.cache("policy", *names)) if names else {}

    def candidate(self, package: str) -> str | None:
        """The version apt would pick for `package` in our suites, or None."""
        return self.candidates([package]).get(package)

    def kernel_candidates(self) -> dict[str, str | None]:
        """{package: candidate} of every linux-binary-*/linux-image-* name apt knows."""
        names = [n for prefix in ("linux-binary-", "linux-image-")
                 for n in self.cache("pkgnames", prefix).split()]
        # Flavours other than plain amd64 and the -dbg/-unsigned twins are never ours.
        ours = [n for n in names if n.endswith("-amd64") and not re.search(
            r"-(rt|cloud)-amd64$|unsigned", n)]
        return self.candidates(ours)

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
        "kernels from the same mirror as the host's bookworm packages"
    )
