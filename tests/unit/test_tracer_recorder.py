"""The recorder's streaming loop, end to end with a stand-in for bcc.BPF (no kernel):
parts on disk, header facts, lost rows, signals, the command's exit."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from pageref.trace.io import read_trace
from pageref.trace.plan_record import coverage_of
from pageref.tracer import recorder as rec_mod
from pageref.tracer.defines import Options
from pageref.tracer.event import PagerefEvent
from pageref.tracer.facts import KernelFacts

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kernels"


class FakeTable(dict):
    def __init__(self, owner: FakeBPF, name: str) -> None:
        super().__init__()
        self.owner, self.name = owner, name

    def open_ring_buffer(self, cb):
        self.owner.cb = cb

    def open_perf_buffer(self, cb, page_cnt=64, lost_cb=None):
        self.owner.cb = cb

    def __getitem__(self, key):
        if self.name == "lost":
            return list(self.owner.lost)
        return super().__getitem__(key)

    def __setitem__(self, key, value):    # ctypes keys and values, as BCC takes them
        super().__setitem__(getattr(key, "value", key), getattr(value, "value", value))

    # The ring buffer as the batch reader sees it (tracer/ringbuf_reader.py): a
    # file laid out like the map's mmap (consumer page, producer page, the data
    # twice), holding the queued events as committed records.
    max_entries = 1 << 16

    @property
    def map_fd(self) -> int:
        if getattr(self, "_fd", None) is None:
            import mmap
            import struct
            page, size = mmap.PAGESIZE, self.max_entries
            data = bytearray()
            for e in self.owner.queue:
                data += struct.pack("<II", ctypes.sizeof(e), 0) + bytes(e)
                data += b"\0" * (-len(data) % 8)
            self.owner.queue = []
            data = bytes(data).ljust(size, b"\0")
            self._fd = os.memfd_create("fake-ringbuf")
            os.write(self._fd, bytes(page) + struct.pack("<Q", len(data.rstrip(b"\0")))
                     .ljust(page, b"\0") + data + data)
        return self._fd


class FakeBPF:
    """Queued events are handed to the callback on poll; `lost` counts per CPU."""

    def __init__(self, events: list[PagerefEvent], lost: list[int]) -> None:
        self.queue = list(events)
        self.lost = lost
        self.cb = None
        self.tables: dict[str, FakeTable] = {}
        self.attached: list[tuple[str, str, str]] = []
        self.cleaned = False

    def __getitem__(self, name):
        return self.tables.setdefault(name, FakeTable(self, name))

    def attach_kprobe(self, event, fn_name):
        self.attached.append(("kprobe", event, fn_name))

    def attach_kretprobe(self, event, fn_name, maxactive=0):
        self.attached.append(("kretprobe", event, fn_name))

    def detach_kprobe(self, event):
        self.attached = [a for a in self.attached if not (a[0] == "kprobe" and a[1] == event)]

    def detach_kretprobe(self, event):
        self.attached = [a for a in self.attached
                         if not (a[0] == "kretprobe" and a[1] == event)]

    pad = 0   # the perf buffer's raw samples carry padding (see test below)

    def _poll(self, timeout_ms):
        import time
        while self.queue:
            e = self.queue.pop(0)
            buf = ctypes.create_string_buffer(bytes(e) + b"\xa5" * self.pad)
            self.cb(0, ctypes.addressof(buf), ctypes.sizeof(e) + self.pad)
        time.sleep(timeout_ms / 1000 / 10)

    ring_buffer_poll = _poll
    perf_buffer_poll = _poll

    def cleanup(self):
        self.cleaned = True

    def load_func(self, fn_name, prog_type):
        self.loaded = [*getattr(self, "loaded", []), (fn_name, prog_type)]
        return type("Fn", (), {"fd": 1000 + len(self.loaded)})()


def _events() -> list[PagerefEvent]:
    base = dict(page=0xFFFFEA0004000000, zone_device=1, pgmap_type=3, pincount=-1,
                comm=b"fio", pid=42, tid=42)
    return [
        PagerefEvent(ts_ns=10, pfn=0x100000, refcount=1, refs=1, kind=1, probe=2,
                     flags=0x40000, ret=1, **base),
        PagerefEvent(ts_ns=20, pfn=0x100000, refcount=1025, refs=1, kind=3, probe=9,
                     flags=0x40000, **base),
        PagerefEvent(ts_ns=30, pfn=0x100000, refcount=1, refs=1, kind=6, probe=1,
                     flags=0x10004, ret=0, **base),
    ]


@pytest.fixture
def recorder(monkeypatch, tmp_path):
    fake = FakeBPF(_events(), lost=[0, 3])
    compiled = []

    def compile_program(defs):
        compiled.append(defs)
        if any(k.startswith("FENTRY_") for k in defs) and fake.refuse_fentry:
            from pageref.errors import PagerefError
            raise PagerefError("BPF compile failed (attach to kfunc refused)")
        return fake
    fake.refuse_fentry = False
    fake.compiled = compiled
    monkeypatch.setattr(rec_mod, "compile_program", compile_program)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts = KernelFacts.load(FIX / "6.1")

    def make(fentry=False, **kw):
        r = rec_mod.Recorder(tmp_path / "t", Options(fentry=fentry),
                             live_mode=kw.pop("live_mode", "quiet"), facts=facts, **kw)
        r.prepare()
        r.attach()
        return r
    return make, fake, tmp_path / "t"


def test_records_events_header_and_lost(recorder):
    make, fake, out = recorder
    r = make(duration_s=0.3)
    assert ("kretprobe", "try_grab_page", "ret_try_grab_page") in fake.attached
    res = r.run()
    assert fake.attached == [] and fake.cleaned
    t = read_trace(out)
    ev = t.events
    assert list(ev[ev.kind != "lost"].kind) == ["pin", "unpin", "grab_failed"]
    assert list(ev[ev.kind != "lost"].probe) == ["try_grab_folio", "gup_put_folio",
                                                 "try_grab_page"]
    row = ev.iloc[0]
    assert row.pfn == 0x100000 and row.pgmap_type == "fsdax" and bool(row.longterm) is False
    assert bool(ev.iloc[2].longterm) is True  # FOLL_LONGTERM 0x10000 on 6.1
    lost = ev[ev.kind == "lost"]
    assert list(lost.cpu) == [1] and list(lost["count"]) == [3]
    h = t.header
    assert h.kernel == "6.1.0-56-amd64" and h.idle_refcount["fsdax"] == 1
    assert h.pin_bias == 1024 and h.lost == {"1": 3}
    assert {p["symbol"] for p in h.probe_plan} >= {"try_grab_page", "gup_put_folio"}
    assert h.end_ns and h.start_ns and h.end_ns >= h.start_ns
    assert h.coverage and h.coverage["uncovered"]
    cov = coverage_of(h)   # the typed header seam: kinds and coverage as the plan said
    assert cov.uncovered == tuple(h.coverage["uncovered"]) == tuple(r.plan.uncovered)
    # one owner: the coverage is written once, not also under extra.tracer
    assert not {"drop_paths_covered", "drop_paths_uncovered", "probes_missing",
                "notes"} & set(h.extra["tracer"])
    assert cov.covered and cov.left_out
    kinds = {e.symbol: e.kinds for e in cov.entries}
    assert kinds["gup_put_folio"] == ("put", "unpin")
    assert kinds["try_grab_page"] == ("get", "pin", "grab_failed")
    assert res.events == 4 and res.lost == {1: 3}


def test_stops_when_command_exits(recorder):
    make, fake, out = recorder
    r = make(command=[sys.executable, "-c", "raise SystemExit(3)"])
    res = r.run()
    assert res.exit_code == 3
    assert read_trace(out).header.command[-1] == "raise SystemExit(3)"


def test_sigterm_detaches_and_closes(recorder):
    make, fake, out = recorder
    r = make(duration_s=30)
    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    res = r.run()
    assert res.duration_s < 10
    assert fake.attached == []
    assert len(read_trace(out).events) == 4


def test_refuses_existing_output(recorder, tmp_path):
    make, fake, out = recorder
    out.mkdir()
    (out / "x").write_text("x")
    from pageref.errors import PagerefError
    with pytest.raises(PagerefError, match="already exists"):
        make(duration_s=0.1)


def test_no_kprobes_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    facts = KernelFacts.load(FIX / "6.1")
    facts.caps = {"kprobes": False}
    from pageref.errors import PagerefError
    r = rec_mod.Recorder(tmp_path / "t", Options(), facts=facts)
    with pytest.raises(PagerefError, match="no kprobes"):
        r.prepare()


def test_comm_stops_at_first_nul():
    from pageref.tracer.decode import DecodeContext, decode
    e = PagerefEvent(ts_ns=1, page=1, pfn=1, kind=2, probe=5, pincount=-1, pgmap_type=3,
                     comm=b"fio\0ax_odirect")
    t = decode(bytes(e), DecodeContext({3: "fsdax"}))
    assert t.column("comm").to_pylist() == ["fio"]


def test_fentry_where_allowed(recorder):
    make, fake, out = recorder
    r = make(fentry=True, duration_s=0.1)
    methods = {a.symbol: a.method.value for a in r.plan.attached}
    assert methods["try_grab_page"] == "fentry+fexit"
    assert methods["free_zone_device_page"] == "fentry"
    assert methods["dax_layout_busy_page_range"] == "fexit"
    assert methods["gup_put_folio"] == "kprobe"  # nesting needs pt_regs
    assert fake.compiled[-1]["FENTRY_TRY_GRAB_PAGE"] == 1
    # trampolines are attached by BCC at load; only the kprobes by attach()
    assert {a[1] for a in fake.attached} == {s for s, m in methods.items() if m == "kprobe"}
    r.run()
    assert read_trace(out).header.probe_plan[0]["method"] in ("fentry+fexit", "kprobe")


def test_fentry_refused_falls_back_to_kprobes(recorder):
    make, fake, out = recorder
    fake.refuse_fentry = True
    r = make(fentry=True, duration_s=0.1)
    assert len(fake.compiled) == 2
    assert all(a.method.value == "kprobe" for a in r.plan.attached)
    assert ("kretprobe", "try_grab_page", "ret_try_grab_page") in fake.attached
    r.run()
    cov = read_trace(out).header.coverage
    assert cov is not None
    assert any("fentry/fexit refused" in n for n in cov["notes"])


_KILL_SCRIPT = r"""
import ctypes, os, sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import test_tracer_recorder as T
from pageref.tracer import recorder as rec_mod
from pageref.tracer.defines import Options
from pageref.tracer.facts import KernelFacts

class Endless(T.FakeBPF):
    def _poll(self, timeout_ms):
        if not self.queue:
            self.queue = T._events()
        super()._poll(timeout_ms)
    ring_buffer_poll = _poll

fake = Endless([], lost=[0])
rec_mod.compile_program = lambda defs: fake
os.geteuid = lambda: 0
facts = KernelFacts.load(T.FIX / "6.1")
r = rec_mod.Recorder(Path(sys.argv[1]), Options(fentry=False), live_mode="quiet", facts=facts,
                     consumer="callback")
r.prepare(); r.attach()
print("running", flush=True)
r.run()
"""


def test_sigkill_leaves_a_readable_trace(tmp_path):
    """Parts are complete files written about every second: killing the recorder
    with SIGKILL loses at most the last second."""
    import subprocess
    import time
    out = tmp_path / "t"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(out),
                             str(Path(__file__).parent)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    time.sleep(3.5)
    proc.kill()
    proc.wait()
    t = read_trace(out)
    assert len(t.events) > 0
    assert t.header.end_ns is not None  # each part's header carries the time so far
    assert not list(out.glob("part-*.parquet.tmp"))


def test_perf_buffer_padding_does_not_shift_events(recorder):
    """perf_submit's raw samples are padded to 8 bytes: the callback's size is
    larger than the struct. Found in the lab: the stream shifted by the padding
    and every event after the first was garbage."""
    make, fake, out = recorder
    fake.pad = 4
    r = make(duration_s=0.3)
    r.opts.ringbuf = False
    r.run()
    ev = read_trace(out).events
    assert list(ev[ev.kind != "lost"].kind) == ["pin", "unpin", "grab_failed"]
    assert list(ev[ev.kind != "lost"].ts_ns) == [10, 20, 30]


def test_walk_programs_loaded_for_the_attached_walks(recorder):
    """The bio walk's tail-call program is loaded into `walks` (index WALK_BIO)
    where __bio_release_pages is attached (6.1); unpin_user_pages is not
    attached there (gup_put_folio is), so its walk is not loaded."""
    make, fake, _ = recorder
    r = make()
    attached = {a.symbol for a in r.plan.attached}
    assert "__bio_release_pages" in attached and "unpin_user_pages" not in attached
    assert [fn for fn, _ in fake.loaded] == ["walk_bio"]
    assert set(fake["walks"]) == {0}
    from pageref.tracer.program import WALKS, program_text

    text = program_text()
    for index, fn, _starters in WALKS:
        assert f"int {fn}(struct pt_regs *ctx)" in text
        assert f"#define WALK_{fn.split('_')[1].upper()} {index}" in text


def test_callback_consumer_still_selectable(recorder):
    make, _fake, out = recorder
    r = make(duration_s=0.3, consumer="callback")
    r.run()
    t = read_trace(out)
    assert list(t.events[t.events.kind != "lost"].ts_ns) == [10, 20, 30]
    assert t.header.extra["tracer"]["consumer"] == "callback"


def test_default_buffer_is_sized_to_the_machine():
    from pageref.tracer.buffer_size import default_buffer_pages as pages
    gib = 1 << 30
    assert pages(True, 5 * gib, 2, 4096) == 4096            # 16 MiB floor
    assert pages(True, 64 * gib, 8, 4096) == 16384          # 8 MiB per CPU
    assert pages(True, 256 * gib, 128, 4096) == 65536       # 256 MiB ceiling
    assert pages(True, 512 << 20, 4, 4096) == 2048          # 1/64 of RAM
    assert pages(False, 5 * gib, 2, 4096) == 2048           # perf: 8 MiB per CPU
    assert pages(False, 1 * gib, 16, 4096) == 256           # 1/64 of RAM in all
    for ram, cpus in ((1 << 28, 1), (3 * gib, 3), (100 * gib, 48)):
        n = pages(True, ram, cpus, 4096)
        assert n & (n - 1) == 0 and 64 <= n <= 65536


def test_batch_reader_keeps_events_that_arrive_after_the_first_part(recorder):
    """Found in the lab (6.1): the batch reader appended to the list the first
    flush had already swapped out, so every event after the first part (about a
    second) vanished without a loss. Here records are committed into the ring
    while the recorder runs, across several parts."""
    import mmap
    import struct
    import threading
    import time

    make, fake, out = recorder
    fake.queue = []                 # start empty: every event comes later
    r = make(duration_s=3.2)
    table = fake["events"]
    fd = table.map_fd
    page, size = mmap.PAGESIZE, table.max_entries
    sent: list[int] = []

    def produce():
        pos = 0
        for i in range(30):
            time.sleep(0.1)
            e = PagerefEvent(ts_ns=1000 + i, page=0xFFFFEA0004000000, pfn=0x100000 + i,
                             refcount=1, refs=1, kind=2, probe=13, zone_device=1,
                             pgmap_type=3, pincount=-1, comm=b"late", pid=7, tid=7)
            rec = struct.pack("<II", ctypes.sizeof(e), 0) + bytes(e)
            rec += b"\0" * (-len(rec) % 8)
            for copy in (0, size):      # the data area is mapped twice
                os.pwrite(fd, rec, 2 * page + copy + pos % size)
            pos += len(rec)
            os.pwrite(fd, struct.pack("<Q", pos), page)   # commit: producer position
            sent.append(1000 + i)

    th = threading.Thread(target=produce)
    th.start()
    r.run()
    th.join()
    t = read_trace(out)
    assert list(t.events[t.events.kind == "put"].ts_ns) == sent
    assert len(sent) == 30


def test_the_last_part_reaches_the_live_view(recorder, capsys):
    """Found in the lab (5.10, 6.1): the final part (what came after the last
    one-second flush) was written but never fed to the live view, so the closing
    line told of 1,024 pins outstanding that the trace showed released. Here
    everything arrives before the first flush: only the final part has it."""
    make, fake, out = recorder
    fake.queue = _events()[:1]          # a pin, never unpinned
    r = make(duration_s=0.3, live_mode="plain")
    r.run()
    closing = [ln for ln in capsys.readouterr().err.splitlines()
               if ln.startswith("pageref record: ") and "analyze" in ln]
    assert closing and "; 1 pins outstanding on 1 pages;" in closing[-1], closing
    from pageref.analysis.anomalies import find_anomalies
    found = find_anomalies(read_trace(out))
    told = "no anomalies" if not len(found) else ", ".join(
        f"{k} {n}" for k, n in sorted(found["kind"].value_counts().items()))
    assert told in closing[-1], (told, closing)
