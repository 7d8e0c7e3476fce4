"""The lab's host side without booting anything: module order, initramfs
format, kernel command line, the console protocol, the workloads' build."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from pageref.errors import PagerefError
from pageref.lab import initramfs, qemu, session
from pageref.lab.kernels import KernelFiles

DEP = """\
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko kernel/fs/fscache/fscache.ko
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/fs/overlayfs/overlay.ko:
kernel/drivers/a-b.ko.xz: kernel/drivers/c.ko.xz
kernel/drivers/c.ko.xz: kernel/drivers/a-b.ko.xz
"""


def test_load_order_puts_dependencies_first_once():
    table = initramfs.parse_modules_dep(DEP)
    order = initramfs.load_order(["9pnet_virtio", "9p", "overlay"], table, set())
    names = [initramfs.module_name(p) for p in order]
    assert names.count("9pnet") == 1 and names.count("netfs") == 1
    for mod, dep in (("9p", "9pnet"), ("9p", "fscache"), ("fscache", "netfs"),
                     ("9pnet_virtio", "virtio_ring")):
        assert names.index(dep) < names.index(mod)


def test_load_order_skips_builtin_and_names_missing_and_cycles():
    table = initramfs.parse_modules_dep(DEP)
    assert initramfs.load_order(["overlay"], table, {"overlay"}) == []
    with pytest.raises(PagerefError, match="neither in modules.dep nor built in"):
        initramfs.load_order(["nosuch"], table, set())
    with pytest.raises(PagerefError, match="cycle"):
        initramfs.load_order(["a-b"], table, set())
    assert initramfs.module_name("kernel/drivers/a-b.ko.xz") == "a_b"


def _cpio_names(data: bytes) -> dict[str, bytes]:
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701", pos
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        out[name] = data[pos: pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out


def test_initramfs_for_the_host_kernel(tmp_path):
    mods = Path("/lib/modules")
    rels = sorted(p.name for p in mods.glob("6.1.*-amd64") if (p / "modules.dep").is_file())
    if not rels:
        pytest.skip("no Debian 6.1 modules on this host")
    try:
        initramfs.find_busybox()
    except PagerefError as e:
        pytest.skip(str(e))
    rel = rels[-1]
    kf = KernelFiles(rel, Path(f"/boot/vmlinuz-{rel}"), mods / rel, None, Path("/"))
    path = initramfs.build_initramfs(kf, tmp_path)
    assert initramfs.build_initramfs(kf, tmp_path) == path    # reused
    files = _cpio_names(path.read_bytes())
    assert files["init"].startswith(b"#!/bin/busybox sh")
    order = files["modules/order"].decode().split()
    assert order and all(f"modules/{m}" in files for m in order)
    assert any(m.endswith("-overlay.ko") for m in order)
    assert files[f"modules/{order[0]}"][:4] == b"\x7fELF"


def test_kernel_cmdline_and_pmem_ranges():
    line = qemu.kernel_cmdline("/x/stage2.sh")
    assert "memmap=512M!4G" in line and "memmap=512M!5G" in line
    assert "pageref.stage2=/x/stage2.sh" in line and "console=ttyS0" in line
    assert qemu.pmem_pfn_ranges() == [(0x100000, 0x120000), (0x140000, 0x160000)]


def test_job_script_quotes_the_command():
    script = session.job_script(["sh", "-c", "echo 'a b' $X"], record=True)
    line = [ln for ln in script.splitlines() if "record" in ln and "-o" in ln][0]
    argv = shlex.split(line)
    assert argv[-3:] == ["sh", "-c", "echo 'a b' $X"]
    assert argv[argv.index("-o") + 1] == session.GUEST_TRACE
    assert "--" in argv


def _fake_boot(tmp_path, monkeypatch, guest: str, timeout_s: float = 30):
    """Run qemu.boot with a shell script standing in for QEMU."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setattr(qemu, "build_initramfs", lambda k, c: tmp_path / "initrd")
    argv = ["sh", "-c", guest, "fake", str(run_dir)]
    monkeypatch.setattr(qemu, "qemu_command", lambda *a, **k: argv)
    kf = KernelFiles("r", tmp_path / "vmlinuz", tmp_path, None, Path("/"))
    marks, out = [], []
    res = qemu.boot(kf, tmp_path, run_dir, "true", timeout_s=timeout_s,
                    on_mark=lambda e, u, d: marks.append((e, u, d)), on_output=out.append)
    return res, marks, out


def test_console_protocol(tmp_path, monkeypatch):
    guest = r"""printf 'boot noise\r\n@@pageref-lab stage1 1.50 \r\n'
echo '@@pageref-lab ready 9.25 mounted'
echo '@@pageref-lab job-start 9.30 '
echo 'hello from the job'
echo '@@pageref-lab job-end 12.00 3'
echo 3 > "$1/exit-code"
echo '[   13.0] reboot: Power down'
"""
    res, marks, out = _fake_boot(tmp_path, monkeypatch, guest)
    assert res.failure is None and res.exit_code == 3
    assert [m[0] for m in marks] == ["stage1", "ready", "job-start", "job-end"]
    assert res.guest_time("ready") == 9.25 and res.marks["ready"][1] == "mounted"
    assert out == ["hello from the job"]
    assert b"boot noise" in res.console_log.read_bytes()


def test_console_failure_and_timeout(tmp_path, monkeypatch):
    res, _, _ = _fake_boot(tmp_path, monkeypatch, "echo '@@pageref-lab fail 2.0 no pmem'")
    assert res.failure and "no pmem" in res.failure
    second = tmp_path / "second"
    second.mkdir()
    res, _, _ = _fake_boot(second, monkeypatch, "echo '@@pageref-lab stage1 1.0 '; exec sleep 30",
                           timeout_s=1)
    assert res.failure and "did not finish within 1 s" in res.failure


def test_a_boot_hung_before_stage_two_is_retried_once(tmp_path, monkeypatch):
    """The first QEMU prints no mark (hung, as a TCG guest once did for half an
    hour); the second boots: one result, the hung console kept beside it."""
    monkeypatch.setattr(qemu, "BOOT_DEADLINE_S", 1.0)
    guest = r"""n=$(cat "$1/tries" 2>/dev/null || echo 0); echo $((n + 1)) > "$1/tries"
if [ "$n" = 0 ]; then echo 'soft lockup'; exec sleep 30; fi
echo '@@pageref-lab stage2 1.0 '
echo '@@pageref-lab job-start 2.0 '
echo '@@pageref-lab job-end 3.0 0'
echo 0 > "$1/exit-code"
"""
    res, marks, _ = _fake_boot(tmp_path, monkeypatch, guest)
    assert res.failure is None and res.exit_code == 0
    assert (tmp_path / "run" / "tries").read_text().strip() == "2"
    assert b"soft lockup" in (tmp_path / "run" / "console-hung-1.log").read_bytes()
    assert b"soft lockup" not in res.console_log.read_bytes()


def test_a_boot_hung_twice_fails_saying_so(tmp_path, monkeypatch):
    monkeypatch.setattr(qemu, "BOOT_DEADLINE_S", 0.5)
    res, _, _ = _fake_boot(tmp_path, monkeypatch, "exec sleep 30")
    assert res.failure and "did not reach stage two within 0 s, 2 times" in res.failure


def test_workloads_build_and_refuse_non_dax(tmp_path):
    import shutil

    from pageref.workloads.build import PROGRAMS, build
    if not shutil.which("gcc"):
        pytest.skip("no gcc")
    out = build(tmp_path)
    assert all((out / p).is_file() for p in PROGRAMS)
    # Off DAX, a workload refuses to run rather than trace nothing.
    proc = subprocess.run([str(out / "dax_pvm"), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is not DAX" in proc.stderr
