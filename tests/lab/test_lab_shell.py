"""`pageref lab shell`: an interactive bash on the guest's serial console."""

from __future__ import annotations

import sys

import pytest
from conftest import require_lab

pytestmark = pytest.mark.lab


def test_lab_shell_runs_commands_and_powers_off():
    require_lab("6.1")
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "pageref", "lab", "shell"], timeout=240,
                          encoding="utf-8", codec_errors="replace", dimensions=(40, 160))
    try:
        child.expect("Exit the shell to power off")
        child.sendline("echo $((6 * 7))-ok $(uname -r) $(stat -f -c %T /mnt/xfs)")
        child.expect(r"42-ok 6\.1\.\S+ xfs")
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
