"""pageref record: trace references on ZONE_DEVICE pages into a trace directory."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import click

from pageref.commands.analysis_params import Duration

EPILOG = """\b
Examples:
  sudo pageref record -o run.trace -- ./my-dax-workload
  sudo pageref record -o run.trace --duration 30s --pid 1234 --pid 1240
  sudo pageref record -o all.trace --all-pages --stacks --duration 5s

\b
Records until --duration ends, the command exits, Ctrl-C or SIGTERM (probes
are detached and the trace closed properly). The trace is a directory of
Parquet parts written about every second: after a SIGKILL it is still readable
up to the last second. Lost events are counted per CPU and written as `lost`
rows; so are pages past a BPF walk's bound (15,872 a call), named by pfn.
`pageref probes` shows what will be attached; see docs/tracer.md.


Struct offsets and enum values come from the kernel's BTF; on a kernel
without BTF, from its headers (compiled, a few seconds). `--layout headers`
uses the headers even where BTF exists, and fails if the two disagree.
"""

def cgroup_id(path: str) -> int:
    """cgroup v2 id of PATH (absolute, or relative to /sys/fs/cgroup): its inode."""
    p = Path(path)
    if not p.is_absolute():
        p = Path("/sys/fs/cgroup") / path
    try:
        st = os.stat(p)
    except OSError as e:
        raise click.BadParameter(f"cgroup {path}: {e.strerror}") from None
    if not (p / "cgroup.procs").exists():
        raise click.BadParameter(f"{p} is not a cgroup v2 directory")
    return st.st_ino


@click.command(epilog=EPILOG, context_settings={"ignore_unknown_options": False})
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="Trace directory to create.")
@click.option("--duration", type=Duration(positive=True), default=None,
              help="Stop after this long (30s, 2min, 1h; a plain number is seconds).")
@click.option("--pid", "pids", type=click.IntRange(1, 2**22), multiple=True,
              help="Only events of this process (tgid); repeatable.")
@click.option("--cgroup", "cgroup", type=str, default=None,
              help="Only events of tasks in this cgroup v2 (path).")
@click.option("--all-pages", is_flag=True, help="Every page, not only ZONE_DEVICE ones.")
@click.option("--pgmap-type", "pgmap_types", multiple=True,
              type=click.Choice(["private", "coherent", "fsdax", "generic", "p2pdma"]),
              help="Only ZONE_DEVICE pages of this pgmap type; repeatable.")
@click.option("--stacks", is_flag=True, help="Record the kernel stack of each event.")
@click.option("--no-fentry", is_flag=True, help="Kprobes only, even where the kernel "
              "allows fentry/fexit (BPF trampolines).")
@click.option("--no-page-ref", is_flag=True, help="Do not attach the kernel's page_ref "
              "tracepoints even where it has them (CONFIG_DEBUG_PAGE_REF kernels): they "
              "record every refcount change of the pages traced (`ref` rows) and fire on "
              "every page of the machine; with --all-pages that is every page's change.")
@click.option("--perf-buffer", is_flag=True, help="Use the perf buffer even if the "
              "kernel has the BPF ring buffer.")
@click.option("--buffer-pages", type=click.IntRange(1, 65536), default=None,
              help="BPF buffer size in pages, a power of two (the ring buffer's "
              "total; the perf buffer's per CPU). Default from this machine: "
              "ring buffer 8 MiB per CPU, 16 to 256 MiB and at most 1/64 of RAM; "
              "perf buffer 8 MiB per CPU, at most 1/64 of RAM in all.")
@click.option("--consumer", type=click.Choice(["batch", "callback"]), default="batch",
              hidden=True, help="Ring buffer reader: spans of the mapped buffer (batch) or "
              "BCC's Python call per event (callback; bench/bench_throughput.py compares).")
@click.option("--layout", "layout_source", type=click.Choice(["auto", "btf", "headers"]),
              default="auto", show_default=True,
              help="Where struct offsets and enum values come from: the kernel's BTF, or "
              "its headers (compiled; checked against BTF where there is one). auto: BTF "
              "if the kernel has it, else headers.")
@click.option("--live", "live_mode", type=click.Choice(["auto", "rich", "plain", "quiet"]),
              default="auto", show_default=True, help="Live view while recording.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def record(out: Path, duration: int | None, pids: tuple[int, ...], cgroup: str | None,
           all_pages: bool, pgmap_types: tuple[str, ...], stacks: bool, no_fentry: bool,
           no_page_ref: bool,
           perf_buffer: bool, buffer_pages: int | None, consumer: str, layout_source: str,
           live_mode: str, command: tuple[str, ...]) -> None:
    """Record references taken and dropped on ZONE_DEVICE pages into OUT
    (root needed). With `-- COMMAND ARGS`, run COMMAND and stop when it exits."""
    from pageref.analysis.fmt import fmt_seconds
    from pageref.errors import PagerefError
    from pageref.tracer.buffer_size import default_buffer_pages
    from pageref.tracer.defines import Options
    from pageref.tracer.header_layout import live_facts
    from pageref.tracer.kernel_rules import pgmap_type_values
    from pageref.tracer.recorder import Recorder

    seconds = None if duration is None else duration / 1e9
    if buffer_pages is None:
        buffer_pages = default_buffer_pages(ringbuf=not perf_buffer)
    if buffer_pages & (buffer_pages - 1):
        raise click.BadParameter("--buffer-pages must be a power of two")
    cg = cgroup_id(cgroup) if cgroup else None
    facts = live_facts(layout_source)
    values = pgmap_type_values(facts)
    types = []
    for name in pgmap_types:
        if name not in values:
            raise PagerefError(f"this kernel has no pgmap type {name!r} "
                               f"(it has {', '.join(sorted(values))})")
        types.append(values[name])
    opts = Options(all_pages=all_pages, pgmap_types=tuple(types), filter_pids=bool(pids),
                   cgroup_id=cg, stacks=stacks, fentry=not no_fentry, page_ref=not no_page_ref,
                   ringbuf=not perf_buffer,
                   ringbuf_pages=buffer_pages)
    rec = Recorder(out, opts, pids=pids, duration_s=seconds,
                   command=list(command) or None, live_mode=live_mode, facts=facts,
                   consumer=consumer)
    rec.prepare()
    if facts.layout_source == "headers":
        click.echo(f"pageref: struct layout {facts.layout_note}", err=True)
    rec.attach()
    methods: dict[str, list[str]] = {}
    assert rec.plan is not None   # prepare() resolved it
    for a in rec.plan.attached:
        methods.setdefault(a.method.value, []).append(a.symbol)
    click.echo(f"pageref: {len(rec.plan.attached)} functions probed, probes attached "
               f"(compile {fmt_seconds(rec.compile_s)}, attach {fmt_seconds(rec.attach_s)}): "
               + "; ".join(f"{m}: {', '.join(s)}" for m, s in methods.items()), err=True)
    # A native crash (BCC, numpy, pyarrow) while streaming would otherwise end
    # in a bare "Segmentation fault": say where, per thread (the drain thread too)
    faulthandler.enable()
    result = rec.run()
    if result.exit_code:
        raise SystemExit(result.exit_code if 0 < result.exit_code < 256 else 1)
