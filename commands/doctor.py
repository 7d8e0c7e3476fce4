"""pageref doctor: can pageref record on this machine? One verdict per check."""

from __future__ import annotations

import click

EPILOG = """\b
Checks: root/CAP_BPF, the bpf() syscall, kprobes, fentry, BCC, kernel headers
or BTF, the probe plan, pmem/DAX devices and DAX mounts. Exits non-zero when
recording cannot work here. See docs/tracer.md.
"""


@click.command(epilog=EPILOG)
def doctor() -> None:
    """Check what recording needs on this machine, with what to do for each gap."""
    from pageref.tracer.doctor import run_checks

    checks = run_checks()
    width = max(len(c.name) for c in checks)
    for c in checks:
        click.echo(f"{c.verdict:5} {c.name:{width}}  {c.detail}")
    fatal = [c for c in checks if c.verdict == "FAIL"]
    if fatal:
        click.echo(f"pageref doctor: {len(fatal)} check(s) failed: recording cannot work here",
                   err=True)
        raise SystemExit(1)
    click.echo("pageref doctor: recording should work here", err=True)
