"""Stale BCC kretprobe events: which lines of kprobe_events are pageref's to remove."""

from __future__ import annotations

from pageref.tracer.stale_probes import stale_events

LISTING = """\
r64:kprobes/r_gup_put_folio_bcc_1234 gup_put_folio
r64:kprobes/r___bio_release_pages_bcc_1234 __bio_release_pages
r64:kprobes/r_gup_put_folio_bcc_999 gup_put_folio
p:kprobes/p_vfs_read_bcc_1234 vfs_read
p:mygroup/myprobe do_sys_open
r:kprobes/r_unpin_user_page_bcc_77 unpin_user_page
"""


def test_only_dead_processes_probes_on_our_symbols():
    alive = {999}.__contains__
    got = stale_events(LISTING, ["gup_put_folio", "__bio_release_pages", "unpin_user_page"],
                       alive)
    assert got == ["kprobes/r_gup_put_folio_bcc_1234", "kprobes/r___bio_release_pages_bcc_1234",
                   "kprobes/r_unpin_user_page_bcc_77"]


def test_nothing_when_every_owner_lives():
    assert stale_events(LISTING, ["gup_put_folio"], lambda pid: True) == []


PROFILE = """\
  r_gup_put_folio_bcc_236                                  123               4
  r___bio_release_pages_bcc_236                             10               0
  p_vfs_read_bcc_236                                        99               7
  r_gup_put_folio_bcc_300                                    5               2
"""


def test_missed_returns_of_this_process_only():
    from pageref.tracer.kprobe_misses import missed_returns

    assert missed_returns(PROFILE, 236) == {"gup_put_folio": 4}
    assert missed_returns(PROFILE, 300) == {"gup_put_folio": 2}
    assert missed_returns(PROFILE, 1) == {}
