"""`pageref probes`, `pageref doctor`, `pageref record` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageref.cli import cli

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kernels"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pageref", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("gen, must", [
    ("6.1", ["bool try_grab_page", "__put_devmap_managed_page_refs", "__bio_release_pages",
             "fsdax 1"]),
    ("7.2", ["int try_grab_folio(struct folio *folio", "unpin_user_folio", "fsdax 0",
             "NOT covered"]),
    # the 5.x reference paths (issue 13) and their not-covered paths
    ("5.10", ["struct page *try_grab_compound_head(", "void put_devmap_managed_page(",
              "void free_devmap_managed_page(", "void bio_release_pages(",
              "unpin_user_pages_dirty_lock(): every page of each call",
              "fsdax and device-private pages, through put_devmap_managed_page",
              "bio_release_pages.part.0", "private 1", "(device DAX, p2pdma)"]),
    ("5.15", ["try_grab_compound_head", "unpin_user_page_range_dirty_lock(): 512 pages",
              "bio_release_pages: needs OFF_BIO_FLAGS", "private 1"]),
    ("6.6", ["__bio_release_pages: not needed", "__put_devmap_managed_page_refs",
             "private 0"]),
    ("6.8", ["struct folio *try_grab_folio(struct page *page",
             "bool __put_devmap_managed_page_refs(", "through __put_devmap_managed_page_refs"]),
])
def test_probes_from_fixture(gen, must):
    r = CliRunner().invoke(cli, ["probes", "--kernel-facts", str(FIX / gen)])
    assert r.exit_code == 0, r.output
    for m in must:
        assert m in r.output


@pytest.mark.parametrize("gen, never", [
    ("5.10", ["__put_devmap_managed_page", "BIO_PAGE_REFFED", "decrements inline",
              "dax_layout_busy_page(struct", "folios_put_refs"]),
    ("5.15", ["__put_devmap_managed_page(", "BIO_PAGE_REFFED"]),
    ("6.6", ["folios_put_refs", "BIO_PAGE_REFFED"]),
    ("6.8", ["folios_put_refs", "BIO_PAGE_REFFED", "__put_devmap_managed_folio_refs",
             "decrements inline"]),
])
def test_probes_never_names_what_the_kernel_lacks(gen, never):
    r = CliRunner().invoke(cli, ["probes", "--kernel-facts", str(FIX / gen)])
    assert r.exit_code == 0, r.output
    for m in never:
        assert m not in r.output, m


def test_probes_json():
    r = CliRunner().invoke(cli, ["probes", "--kernel-facts", str(FIX / "6.12"), "--json"])
    d = json.loads(r.output)
    assert d["idle_refcount"]["fsdax"] == 1
    assert any(a["symbol"] == "__put_devmap_managed_folio_refs" for a in d["plan"]["attached"])
    assert d["layout"]["zones_pgshift"] == 51
    assert d["layout"]["source"] == "btf"


def test_probes_live_no_root_needed():
    r = run("probes")
    assert r.returncode == 0, r.stderr
    assert "grab:" in r.stdout and "drop paths NOT covered" in r.stdout


def test_doctor_verdicts():
    r = run("doctor")
    lines = r.stdout.splitlines()
    names = [ln.split()[1] for ln in lines if ln.split()]
    for n in ("privileges", "bpf", "kprobes", "bcc", "BTF", "pmem"):
        assert n in names
    assert all(ln.split()[0] in ("OK", "WARN", "FAIL", "INFO") for ln in lines if ln.strip())
    if not os.path.exists("/sys/bus/event_source/devices/kprobe"):
        assert r.returncode == 1 and "cannot work" in r.stderr


@pytest.mark.skipif(os.path.exists("/sys/bus/event_source/devices/kprobe"),
                    reason="this kernel has kprobes")
def test_record_without_kprobes_is_one_line(tmp_path):
    r = run("record", "-o", str(tmp_path / "t"), "--duration", "1s")
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "kprobes" in err[0] and "Traceback" not in r.stderr


@pytest.mark.skipif(os.path.isdir(f"/lib/modules/{os.uname().release}/build")
                    or bool(os.environ.get("BCC_KERNEL_SOURCE")),
                    reason="this kernel has headers")
def test_record_layout_from_missing_headers_is_one_line(tmp_path):
    r = run("record", "-o", str(tmp_path / "t"), "--layout", "headers", "--duration", "1s")
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "no kernel headers" in err[0] and "linux-headers-" in err[0]


def test_record_bad_duration(tmp_path):
    r = CliRunner().invoke(cli, ["record", "-o", str(tmp_path / "t"), "--duration", "soon"])
    assert r.exit_code != 0 and "duration" in r.output


def test_duration_parse():
    # record --duration parses with the one duration parser (pageref.analysis.fmt)
    from pageref.analysis.fmt import parse_seconds as parse_duration
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120
    assert parse_duration("500ms") == 0.5 and parse_duration("7") == 7


def test_record_help_lists_options():
    r = CliRunner().invoke(cli, ["record", "--help"])
    for opt in ("--duration", "--pid", "--all-pages", "--stacks", "--pgmap-type", "--cgroup",
                "--layout"):
        assert opt in r.output


def test_bench_bpftrace_equivalent_covers_the_plan(monkeypatch):
    """The bpftrace script the overhead bench compares against probes the same
    functions with the same ZONE_DEVICE filter (numbers only)."""
    import importlib.util

    from pageref.tracer import facts as facts_mod
    from pageref.tracer.plan import resolve
    spec = importlib.util.spec_from_file_location(
        "bench_overhead", Path(__file__).resolve().parents[2] / "bench" / "bench_overhead.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    f = facts_mod.KernelFacts.load(FIX / "6.1")
    monkeypatch.setattr(facts_mod.KernelFacts, "live", classmethod(lambda cls: f))
    script = bench.bpftrace_script()
    assert script.startswith("BEGIN")
    for a in resolve(f).attached:
        if a.symbol not in ("unpin_user_pages", "__bio_release_pages"):
            assert f"probe:{a.symbol} " in script, a.symbol
    assert ">> 51) & 7) == 4" in script
