"""`pageref lab demo|run|shell`: the QEMU pmem lab (docs/lab.md).

Thin commands over pageref.lab.session: boot a real kernel with emulated pmem
and DAX file systems under TCG, run pageref record there, bring the trace out.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import click

from pageref.commands.lab_kernels import kernels as _kernels
from pageref.errors import PagerefError
from pageref.lab.kernels import GENERATIONS as KERNELS


def _say(msg: str) -> None:
    click.echo(f"pageref lab: {msg}", err=True)


def _kernel_option(f):
    return click.option("--kernel", default="6.1", show_default=True, type=click.Choice(KERNELS),
                        help="Kernel generation to boot (newest: the newest Debian serves).")(f)


@click.group()
def lab() -> None:
    """A QEMU guest with emulated pmem where pageref runs for real.

    \b
    Guest paths: /mnt/ext4 (ext4 -o dax, pmem0p1), /mnt/xfs (xfs -o dax=always,
    pmem0p2), /dev/dax1.0 (device DAX, $PAGEREF_LAB_DEVDAX),
    /mnt/scratch (ext4 on a RAM disk, no DAX: the O_DIRECT side),
    /dev/mapper/slow (dm-delay, 500 ms: I/O held in flight), /results (shared
    with the host's run directory). See docs/lab.md.
    """


@lab.command()
@_kernel_option
@click.option("-o", "--output-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("pageref-lab-demo"), show_default=True,
              help="Where the trace, the report and the logs go.")
@click.option("--fs", "fss", multiple=True, type=click.Choice(("ext4", "xfs")),
              help="File systems to run the workloads on (default: both).")
@click.option("--devdax/--no-devdax", default=True, show_default=True,
              help="Also run the device DAX workloads on /dev/dax1.0 (same recording).")
@click.option("--timeout", type=click.IntRange(60), default=900, show_default=True,
              help="Seconds the whole guest run may take before it is killed.")
def demo(kernel: str, output_dir: Path, fss: tuple[str, ...], devdax: bool,
         timeout: int) -> None:
    """Boot the lab, record the shipped DAX workloads (fsdax on ext4 and xfs, and
    device DAX) in one trace, analyse it, write the report."""
    from pageref.lab import session

    t0 = time.monotonic()
    _say("compiling the workloads")
    command = session.demo_command(fss or ("ext4", "xfs"), devdax=devdax)
    run = session.run(command, kernel=kernel, timeout_s=timeout, progress=_say, label="demo",
                      output=lambda line: click.echo(f"  guest| {line}", err=True))
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in ("workloads.jsonl", "console.log", "dmesg.txt", "timings.json"):
        if (run.run_dir / name).exists():
            shutil.copy2(run.run_dir / name, output_dir / name)
    if run.trace is None:
        raise PagerefError(f"the guest wrote no trace (pageref record exit {run.exit_code}); "
                           f"see {output_dir / 'console.log'}")
    trace = session.move_trace(run.trace, output_dir / "trace")
    _say(f"analysing {trace}")
    summary = _analyse(trace, output_dir)
    report = output_dir / "report.html"
    _say("writing the report")
    from pageref.report.build import write_report

    write_report(trace, report)
    timings = dict(run.timings, demo_s=round(time.monotonic() - t0, 1))
    (output_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    click.echo(f"trace:     {trace}")
    click.echo(f"report:    {report}")
    click.echo(f"summary:   {summary}")
    click.echo(f"workloads: {output_dir / 'workloads.jsonl'}")
    click.echo("timings:   " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    if run.exit_code != 0:
        _say(f"warning: the workload suite exited {run.exit_code} (see console.log)")
        sys.exit(1)


def _analyse(trace: Path, output_dir: Path) -> Path:
    from pageref.analysis.anomalies import find_anomalies
    from pageref.analysis.summary import summarize
    from pageref.trace.io import read_trace

    t = read_trace(trace)
    anomalies = find_anomalies(t)
    out = output_dir / "summary.json"
    out.write_text(json.dumps(summarize(t, anomalies), indent=1, default=str) + "\n")
    if len(anomalies):
        for kind, n in anomalies["kind"].value_counts().items():
            _say(f"anomaly {kind}: {n}")
    else:
        _say("no anomalies")
    return out


@lab.command(context_settings={"ignore_unknown_options": True})
@_kernel_option
@click.option("--fs", default="ext4", show_default=True, type=click.Choice(("ext4", "xfs")),
              help="DAX file system exported as $PAGEREF_LAB_DAX (both are mounted).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("lab.trace"),
              show_default=True, help="Where to put the trace.")
@click.option("--no-record", is_flag=True, help="Run the command without the tracer.")
@click.option("--record-arg", "record_args", multiple=True,
              help="Extra argument for `pageref record` in the guest (repeatable).")
@click.option("--timeout", type=click.IntRange(60), default=900, show_default=True,
              help="Seconds the whole guest run may take before it is killed.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(kernel: str, fs: str, output: Path, no_record: bool, record_args: tuple[str, ...],
        timeout: int, command: tuple[str, ...]) -> None:
    """Run COMMAND in the guest under `pageref record`; bring the trace out.

    COMMAND starts in the current directory (the host's root is visible
    read-only, writes go to a throw-away overlay); files meant to come back go
    to /results ($PAGEREF_LAB_RESULTS), the run directory printed at the end.
    Its stdout and stderr are printed as they come; the exit status is its own.

    \b
    Example:
      pageref lab run --fs xfs -o punch.trace -- sh -c \\
          'dd if=/dev/zero of=$PAGEREF_LAB_DAX/f bs=1M count=4'
    """
    from pageref.lab import session

    r = session.run(list(command), kernel=kernel, fs=fs, record=not no_record,
                    record_args=record_args, timeout_s=timeout, progress=_say,
                    output=click.echo)
    if r.trace is not None:
        dest = session.move_trace(r.trace, output)
        _say(f"trace: {dest}")
    elif not no_record:
        _say(f"no trace was written (see {r.run_dir / 'console.log'})")
    _say(f"results: {r.run_dir}")
    sys.exit(r.exit_code if r.exit_code is not None else 1)


@lab.command()
@_kernel_option
@click.option("--fs", default="ext4", show_default=True, type=click.Choice(("ext4", "xfs")))
def shell(kernel: str, fs: str) -> None:
    """An interactive shell in the guest (exit it to power off; Ctrl-A X kills QEMU)."""
    from pageref.lab import qemu
    from pageref.lab.kernels import ensure_kernel
    from pageref.lab.paths import cache_dir
    from pageref.lab.session import require_root

    require_root()
    kf = ensure_kernel(kernel)
    cache = cache_dir()
    run_dir = qemu.new_run_dir(cache, f"shell-{kernel}")
    _say(f"booting {kf.release}; results share {run_dir} is /results in the guest")
    r = qemu.boot(kf, cache, run_dir, "", env={"PAGEREF_LAB_FS": fs, "PAGEREF_LAB_CWD": "/root"},
                  interactive=True, timeout_s=24 * 3600)
    if r.failure:
        raise PagerefError(r.failure)


lab.add_command(_kernels)
