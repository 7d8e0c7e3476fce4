"""lab/session.py's shared boot: several jobs ("parts") in one guest boot, each
with its own results directory, output and exit status. The guest's job is
run here by the host's /bin/sh with /results pointed at a temporary directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pageref.lab import qemu, session
from pageref.lab.kernels import KernelFiles

PARTS = (
    session.Part("first", script='echo "out $1 $X"; echo kept > "$PAGEREF_LAB_PART_DIR/f"; exit 3',
                 args=("arg one",), env=(("X", "x y"),)),
    session.Part("second",
                 script='echo "$PAGEREF_WORKLOADS_OUT"; '
                        'test -s "$PAGEREF_LAB_PART_DIR/../first/f"'),
)


def run_guest(script: str, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script.replace(session.RESULTS, str(results))],
                          cwd=results, capture_output=True, text=True)


def _write_parts(results: Path) -> None:
    for p in PARTS:
        (results / p.name).mkdir(parents=True, exist_ok=True)
        (results / p.name / "job.sh").write_text(p.script)


def test_parts_run_in_order_each_with_its_own_status(tmp_path: Path) -> None:
    _write_parts(tmp_path)
    r = run_guest(session.parts_script(PARTS), tmp_path)
    assert r.returncode == 3                      # the boot's status: a part failed
    marks = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("@@pageref-lab")]
    assert marks == ["part-start-first", "part-end-first", "part-start-second",
                     "part-end-second"]
    assert (tmp_path / "first" / "exit-code").read_text().strip() == "3"
    assert (tmp_path / "second" / "exit-code").read_text().strip() == "0"   # ran after a failure
    assert (tmp_path / "first" / "console.log").read_text() == "out arg one x y\n"
    assert (tmp_path / "second" / "console.log").read_text().strip() == \
        f"{tmp_path}/second/workloads.jsonl"


def test_run_parts_gives_one_run_per_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEREF_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(session, "require_root", lambda: None)
    monkeypatch.setattr(session, "ensure_kernel", lambda k: KernelFiles(
        "r", tmp_path / "vmlinuz", tmp_path, None, Path("/"), generation=k))

    def fake_boot(kf, cache, run_dir, script, env=None, timeout_s=0.0, on_mark=None, **kw):
        assert timeout_s > 600                     # the parts' budgets, plus the boot
        r = run_guest(script, run_dir)
        (run_dir / "lab-layout.txt").write_text("ext4 /mnt/ext4 /dev/pmem0p1 1 2\n")
        marks = {"stage2": (1.0, ""), "ready": (2.0, "")}
        for ln in r.stdout.splitlines():
            _, event, up, *rest = ln.split(" ")
            marks[event] = (float(up), " ".join(rest))
        return qemu.GuestResult(r.returncode, marks, 9.0, run_dir / "console.log", run_dir, None)

    monkeypatch.setattr(qemu, "boot", fake_boot)
    runs = session.run_parts(PARTS, kernel="5.10")
    assert list(runs) == ["first", "second"]
    first, second = runs["first"], runs["second"]
    assert (first.exit_code, second.exit_code) == (3, 0)
    assert first.run_dir.name == "first" and first.run_dir.parent == second.run_dir.parent
    assert (first.run_dir / "f").read_text() == "kept\n"
    assert first.trace is None and first.workloads == []
    for run in (first, second):   # the boot's own files, seen from each part
        assert (run.run_dir / "lab-layout.txt").read_text().startswith("ext4 ")
    assert first.timings["ready_s"] == 2.0 and "job_s" in first.timings
