"""The recorder: compile the BPF program for this kernel, attach the probe
plan, stream events into a directory of Parquet parts (one about every second,
so a SIGKILL loses at most the last second), count what the buffers lost.

Compile (tracer/program.py `compile_program`) and attach (`Recorder.attach`)
are separate steps so the compile can be tested on a machine that cannot attach.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from pageref.errors import PagerefError
from pageref.trace.frame import conform, table_to_frame
from pageref.trace.header import TraceHeader
from pageref.trace.parquet import PartWriter
from pageref.tracer import kernel_rules
from pageref.tracer.buffer_size import backlog_limit
from pageref.tracer.decode import DecodeContext, decode
from pageref.tracer.defines import Options, defines, layout
from pageref.tracer.event import PagerefEvent
from pageref.tracer.facts import KernelFacts
from pageref.tracer.losses import LossAccount
from pageref.tracer.plan import ProbePlan, resolve
from pageref.tracer.program import (
    BPF_PROG_TYPE_KPROBE,
    WALKS,
    compile_program,
    has_ringbuf,
)
from pageref.tracer.ringbuf_reader import RingReader, open_reader
from pageref.tracer.stale_probes import remove_stale
from pageref.tracer.stream import Drainer, close_perf_buffer, cpu_s, live_view
from pageref.tracer.targets import AttachMethod

EVENT_SIZE = ctypes.sizeof(PagerefEvent)
FLUSH_S = 1.0

@dataclasses.dataclass
class RecordResult:
    path: Path
    events: int
    lost: dict[int, int]
    per_probe: dict[str, int]
    compile_s: float
    attach_s: float
    duration_s: float
    exit_code: int | None = None


class Recorder:
    """One recording. Usage: r = Recorder(out, opts); r.prepare(); r.attach(); r.run()."""

    def __init__(self, out: Path, opts: Options, *, pids: tuple[int, ...] = (),
                 duration_s: float | None = None, command: list[str] | None = None,
                 live_mode: str = "auto", facts: KernelFacts | None = None,
                 consumer: str = "batch") -> None:
        self.out = Path(out)
        self.opts = opts
        self.pids = pids
        self.duration_s = duration_s
        self.command = command
        self.live_mode = live_mode
        self.facts = facts
        # ring buffer: "batch" reads the mapped buffer in spans (ringbuf_reader.py),
        # "callback" is BCC's one Python call per event (kept to compare, bench/)
        self.consumer = consumer
        self.plan: ProbePlan | None = None
        self.bpf: Any = None
        self.attached: list[tuple[str, str]] = []   # (kind, symbol) to detach
        self._raw: list[bytes] = []
        self._drainer: Drainer | None = None
        self.losses = LossAccount()
        self.per_probe: dict[str, int] = {}
        self._stack_cache: dict[int, list[str]] = {}
        self._stop = False
        self.compile_s = 0.0
        self.attach_s = 0.0
        self.fentry_refused: str | None = None

    # -- set-up ---------------------------------------------------------------
    def prepare(self) -> None:
        """Facts, plan, defines, header; compile. No probes attached yet."""
        if os.geteuid() != 0:
            raise PagerefError("recording needs root (or CAP_BPF+CAP_PERFMON); run with sudo")
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise PagerefError(f"{self.out} already exists; choose a new -o path")
        if self.facts is None:
            from pageref.tracer.header_layout import live_facts
            self.facts = live_facts()
        caps = self.facts.caps
        if caps.get("kprobes") is False:
            raise PagerefError("this kernel has no kprobes (CONFIG_KPROBES off or no "
                               "kprobe PMU); pageref cannot attach here. Run `pageref doctor`")
        self.opts.self_tgid = os.getpid()
        want_fentry = self.opts.fentry and caps.get("fentry") is not False
        self.plan = resolve(self.facts, fentry=want_fentry, page_ref=self.opts.page_ref)
        if not self.plan.attached:
            raise PagerefError("no probe target found on this kernel; see `pageref probes`")
        self.layout = layout(self.facts)
        if self.opts.ringbuf and not has_ringbuf(self.facts):
            self.opts.ringbuf = False
        page_size = os.sysconf("SC_PAGE_SIZE")
        self.defs = defines(self.facts, self.plan, self.opts, page_size=page_size)
        t0 = time.monotonic()
        uses_fentry = any(a.method.trampoline for a in self.plan.attached)
        try:
            # fentry/fexit programs are attached by BCC as it loads them
            self.bpf = compile_program(self.defs)
        except PagerefError as e:
            if not uses_fentry:
                raise
            # The kernel refused BPF trampolines (or the compile failed for them):
            # the same plan with kprobes everywhere.
            self.fentry_refused = str(e)
            print("pageref: fentry/fexit refused here; using kprobes", file=sys.stderr)
            self.plan = resolve(self.facts, fentry=False, page_ref=self.opts.page_ref)
            self.defs = defines(self.facts, self.plan, self.opts, page_size=page_size)
            self.bpf = compile_program(self.defs)
        self.compile_s = time.monotonic() - t0
        if self.pids:
            table = self.bpf["pids"]
            for pid in self.pids:
                table[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
        self.decode_ctx = DecodeContext(
            pgmap_names=kernel_rules.pgmap_type_names(self.facts),
            foll_longterm=self.facts.foll.get("FOLL_LONGTERM", 0),
            stack_of=self._stack if self.opts.stacks else None,
        )

    def attach(self) -> None:
        """Attach every probe of the plan (kprobe + kretprobe where it has a return)."""
        assert self.plan is not None and self.bpf is not None
        t0 = time.monotonic()
        self._load_walks()
        removed = remove_stale(self.plan.symbols())
        if removed:
            print(f"pageref: removed {len(removed)} kretprobe event(s) a killed recorder "
                  f"left in kprobe_events ({', '.join(removed)})", file=sys.stderr)
        for entry in self.plan.attached:
            sym = entry.symbol
            if entry.method.trampoline:
                continue  # fentry/fexit: attached when BCC loaded the program
            if entry.method is AttachMethod.RAW_TRACEPOINT:
                self._attach_tracepoint(sym)
                continue
            try:
                self.bpf.attach_kprobe(event=sym, fn_name=f"on_{sym}")
                self.attached.append(("kprobe", sym))
                if entry.ret:
                    self.bpf.attach_kretprobe(event=sym, fn_name=f"ret_{sym}", maxactive=64)
                    self.attached.append(("kretprobe", sym))
            except Exception as e:
                self.detach()
                raise PagerefError(f"cannot attach a kprobe to {sym} ({e}); "
                                   "run `pageref doctor` and `pageref probes`") from None
        self.attach_s = time.monotonic() - t0

    def _attach_tracepoint(self, tp: str) -> None:
        """A page_ref tracepoint (tracer/page_ref.py), as a raw tracepoint."""
        assert self.bpf is not None
        try:
            self.bpf.attach_raw_tracepoint(tp=tp.encode(), fn_name=f"on_{tp}".encode())
        except Exception as e:  # bcc raises bare Exception
            self.detach()
            raise PagerefError(f"cannot attach the page_ref:{tp} tracepoint ({e}); record "
                               "with --no-page-ref, and run `pageref doctor`") from None
        self.attached.append(("raw_tracepoint", tp))

    def _load_walks(self) -> None:
        """The tail-call programs that walk a bio / an unpin array (WALK_* in the
        BPF program), loaded into the `walks` array where their probe is attached."""
        symbols = {a.symbol for a in self.plan.attached} if self.plan else set()
        for index, fn, starters in WALKS:
            sym = next((s for s in starters if s in symbols), None)
            if sym is None:
                continue
            try:
                prog = self.bpf.load_func(fn, BPF_PROG_TYPE_KPROBE)
                self.bpf["walks"][ctypes.c_int(index)] = ctypes.c_int(prog.fd)
            except Exception as e:  # bcc raises bare Exception
                raise PagerefError(f"cannot load the {fn} walk for {sym} ({e}); "
                                   "run `pageref doctor`") from None

    def detach(self) -> None:
        if self.bpf is None:
            return
        for kind, sym in reversed(self.attached):
            with contextlib.suppress(Exception):
                if kind == "kprobe":
                    self.bpf.detach_kprobe(event=sym)
                elif kind == "raw_tracepoint":
                    self.bpf.detach_raw_tracepoint(tp=sym.encode())
                else:
                    self.bpf.detach_kretprobe(event=sym)
        self.attached = []
        for table, detach in (("kfunc_entry_fds", "detach_kfunc"),
                              ("kfunc_exit_fds", "detach_kretfunc")):
            for fn in list(getattr(self.bpf, table, {}) or {}):
                with contextlib.suppress(Exception):
                    getattr(self.bpf, detach)(fn_name=fn)

    # -- header -----------------------------------------------------------------
    def header(self, start_ns: int, start_time: str) -> TraceHeader:
        assert self.plan is not None and self.facts is not None
        idle, idle_why = kernel_rules.idle_refcount(self.facts)
        bias, bias_src = kernel_rules.pin_bias(self.facts)
        return TraceHeader(
            kernel=self.facts.release,
            pin_bias=bias,
            page_size=os.sysconf("SC_PAGE_SIZE"),
            idle_refcount=idle,
            probe_plan=self.plan.header_plan(),
            coverage=self.plan.header_coverage(self.layout.notes + (
                [f"fentry/fexit refused, kprobes used: {self.fentry_refused}"]
                if self.fentry_refused else [])),
            start_ns=start_ns,
            start_time=start_time,
            host=socket.gethostname(),
            command=list(self.command) if self.command else None,
            extra={"tracer": {
                "idle_refcount_reason": idle_why,
                "pin_bias_source": bias_src,
                "layout": self.facts.layout_source,
                "layout_note": self.facts.layout_note,
                "foll": self.facts.foll,
                "foll_source": self.facts.foll_source,
                "pgmap_types": {str(k): v for k, v in
                                kernel_rules.pgmap_type_names(self.facts).items()},
                "filters": {"all_pages": self.opts.all_pages, "pids": list(self.pids),
                            "pgmap_types": list(self.opts.pgmap_types),
                            "cgroup_id": self.opts.cgroup_id, "stacks": self.opts.stacks},
                "buffer": "ringbuf" if self.opts.ringbuf else "perf",
                "buffer_pages": self.opts.ringbuf_pages,
                "consumer": self.consumer if self.opts.ringbuf else "callback",
                "compile_s": round(self.compile_s, 3),
                "attach_s": round(self.attach_s, 3),
                "defines": self.defs,
            }},
        )

    # -- streaming ------------------------------------------------------------
    def _on_event(self, _cpu: Any, data: Any, size: int) -> int:
        # One event per call. The perf buffer pads its raw samples to 8 bytes
        # (u32 size + data), so `size` can exceed the struct: keep exactly one
        # struct, or the concatenated stream would shift by the padding.
        if size >= EVENT_SIZE:
            self._raw.append(ctypes.string_at(data, EVENT_SIZE))
        return 0

    def _stack(self, stack_id: int) -> list[str] | None:
        frames = self._stack_cache.get(stack_id)
        if frames is None:
            try:
                frames = [self.bpf.ksym(a, show_offset=True).decode("utf-8", "replace")
                          for a in self.bpf["stacks"].walk(stack_id)]
            except Exception:
                return None
            self._stack_cache[stack_id] = frames
        return frames

    def _flush(self, writer: PartWriter, view: Any) -> None:
        raw, self._raw = b"".join(self._raw), []
        tables = []
        if raw:
            t = decode(raw, self.decode_ctx)
            for sym, n in zip(*_value_counts(t.column("probe"))):
                self.per_probe[sym] = self.per_probe.get(sym, 0) + n
            self.losses.walked(t)
            self.losses.stacks(t, writer.header)
            tables.append(t)
            if self._drainer is not None:
                self._drainer.written(len(raw))
        lost = self.losses.update(self.bpf, writer.header)
        if lost is not None:
            tables.append(lost)
        writer.header.end_ns = time.monotonic_ns()
        if tables:
            table = pa.concat_tables([_conform(t) for t in tables])
            writer.write(table)
            if view is not None:
                view.feed(table_to_frame(table))
        if view is not None:
            view.set_counters(self.per_probe, dict(self.losses.lost))
            view.refresh()

    def _signal(self, signum: int, _frame: Any) -> None:
        self._stop = True

    def run(self) -> RecordResult:
        """Stream until the duration ends, a signal, or the command exits."""
        assert self.bpf is not None
        start_ns = time.monotonic_ns()
        cpu0 = cpu_s()
        start_time = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        header = self.header(start_ns, start_time)
        writer = PartWriter(self.out, header)
        view = live_view(self.live_mode, header)
        events = self.bpf["events"]
        reader: RingReader | None = None
        drainer: Drainer | None = None
        poll: Callable[[], Any]
        if self.opts.ringbuf and self.consumer == "batch":
            reader = open_reader(events, EVENT_SIZE)
            ring_bytes = self.opts.ringbuf_pages * os.sysconf("SC_PAGE_SIZE")
            drainer = Drainer(reader, backlog_limit(ring_bytes))
            self._drainer = drainer
            # through self: _flush swaps self._raw for a new list every part
            poll = functools.partial(drainer.poll_into, self)
        elif self.opts.ringbuf:
            events.open_ring_buffer(self._on_event)
            poll = lambda: self.bpf.ring_buffer_poll(100)  # noqa: E731
        else:
            # lost_cb: BCC would print "Possibly lost N samples" for what the BPF
            # program already counts (a refused perf_submit) in its `lost` map
            events.open_perf_buffer(self._on_event, page_cnt=self.opts.ringbuf_pages,
                                    lost_cb=lambda _n: None)
            poll = lambda: self.bpf.perf_buffer_poll(100)  # noqa: E731
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        child = None
        exit_code = None
        try:
            if self.command:
                try:
                    child = subprocess.Popen(self.command)
                except OSError as e:
                    raise PagerefError(f"cannot run {self.command[0]}: {e.strerror}") from None
            deadline = None if self.duration_s is None else time.monotonic() + self.duration_s
            next_flush = time.monotonic() + FLUSH_S
            while not self._stop:
                poll()
                now = time.monotonic()
                if child is not None and child.poll() is not None:
                    exit_code = child.returncode
                    break
                if deadline is not None and now >= deadline:
                    break
                if now >= next_flush:
                    self._flush(writer, view)
                    next_flush = now + FLUSH_S
            # drain what is already in the buffer
            poll()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self.detach()
            if child is not None and child.poll() is None:
                # stopped by a signal or --duration: the recording ends as asked,
                # so the command's forced exit is not record's exit status
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            if drainer is not None:
                if drainer.backlog_waits:
                    print("pageref: warning: the Parquet writer fell behind and reading paused "
                          "at the backlog bound (tracer/buffer_size.py); any events the ring "
                          "buffer could not hold meanwhile are counted as lost", file=sys.stderr)
                try:
                    drainer.stop()      # joined before the buffer's last read and close
                except Exception as e:  # what it read is kept; the rest is not seen: say so
                    print(f"pageref: warning: the ring buffer reader failed ({e}); events "
                          "after that point are missing from the trace", file=sys.stderr)
            with contextlib.suppress(Exception):
                poll()
            # the view too: the last part holds the workload's final releases (fed
            # nothing, the closing line told of 1,024 pins outstanding that the
            # trace shows released)
            self._flush(writer, view)
            writer.header.end_ns = time.monotonic_ns()
            # the recorder's CPU time while streaming (reading, decoding, writing
            # parts): events / this is the rate its consumer sustains (bench/)
            writer.header.extra.setdefault("tracer", {})["consumer_cpu_s"] = round(
                cpu_s() - cpu0, 3)
            writer.close()
            if view is not None:
                view.set_counters(self.per_probe, dict(self.losses.lost))
                view.close()
            if reader is not None:
                if reader.skipped:
                    print(f"pageref: warning: {reader.skipped} ring buffer records were "
                          "not pageref events (skipped)", file=sys.stderr)
                reader.close()
            if not self.opts.ringbuf:
                with contextlib.suppress(Exception):
                    close_perf_buffer(self.bpf["events"])
            with contextlib.suppress(Exception):
                self.bpf.cleanup()
        print(f"pageref: {writer.events} events in {writer.parts} parts written to "
              f"{self.out}" + self.losses.summary(), file=sys.stderr)
        return RecordResult(self.out, writer.events, dict(self.losses.lost), dict(self.per_probe),
                            self.compile_s, self.attach_s,
                            (time.monotonic_ns() - start_ns) / 1e9, exit_code)


def _value_counts(col: pa.ChunkedArray | pa.Array) -> tuple[list[str], list[int]]:
    vc = col.value_counts() if isinstance(col, pa.Array) else col.combine_chunks().value_counts()
    vals = vc.field("values").to_pylist()
    counts = vc.field("counts").to_pylist()
    return [v for v in vals if v is not None], [c for v, c in zip(vals, counts) if v is not None]


def _conform(t: pa.Table) -> pa.Table:
    return conform(t)
