"""The judge: two VIP owners as the client's ARP probe saw them, lost records, the client's
longest wait, and the replication processes' stops read from module logs."""

from __future__ import annotations

import pytest

from safekit.chaos import judge
from safekit.chaos.arpprobe import classify, probe_mac, request_frame

A, B = "02:5b:c6:12:00:01", "02:5b:c6:12:00:02"


def probe_lines(answers: list[list[str]], interval: float = 0.03, t0: float = 100.0) -> list[str]:
    lines = []
    for seq, macs in enumerate(answers):
        t = t0 + seq * interval
        lines.append(f"S {seq} {t:.6f}")
        lines += [f"R {seq} {t + 0.001:.6f} {mac}" for mac in macs]
    return lines


def test_one_owner_at_a_time_is_zero_seconds_even_across_a_swap() -> None:
    evidence = judge.parse_probe(probe_lines([[A]] * 10 + [[]] * 5 + [[B]] * 10))
    verdict = judge.vip_owners(evidence, 0, 1e9)
    assert verdict.two_owner_seconds == 0
    assert verdict.owners == {A: 10, B: 10}
    assert verdict.unanswered_seconds == pytest.approx(5 * 0.03, abs=1e-6)


def test_requests_answered_by_two_macs_count_their_share_of_the_timeline() -> None:
    evidence = judge.parse_probe(probe_lines([[A]] * 5 + [[A, B]] * 4 + [[B]] * 5 + [[A, B]] * 2))
    verdict = judge.vip_owners(evidence, 0, 1e9)
    assert verdict.two_owner_seconds == pytest.approx(6 * 0.03, abs=1e-3)
    assert [len(e.macs) for e in verdict.episodes] == [2, 2]
    assert verdict.episodes[0].seconds == pytest.approx(4 * 0.03, abs=1e-3)


def test_a_late_answer_counts_for_the_request_it_answers_not_for_the_next() -> None:
    # The old owner's answer to request 0 arrives after the new owner answered request 1.
    lines = [
        "S 0 100.00",
        "S 1 100.03",
        f"R 1 100.031 {B}",
        f"R 0 100.05 {A}",
        "S 2 100.06",
        f"R 2 100.061 {B}",
    ]
    assert judge.vip_owners(judge.parse_probe(lines), 0, 1e9).two_owner_seconds == 0


def test_a_stalled_probe_counts_at_most_the_cap() -> None:
    lines = ["S 0 100.0", f"R 0 100.001 {A}", f"R 0 100.002 {B}", "S 1 105.0"]
    verdict = judge.vip_owners(judge.parse_probe(lines), 0, 1e9, max_interval=0.2)
    assert verdict.two_owner_seconds == pytest.approx(0.2)


def test_only_requests_sent_in_the_window_count() -> None:
    evidence = judge.parse_probe(probe_lines([[A, B]] * 10))
    assert judge.vip_owners(evidence, 100.0, 100.15).requests == 5


def test_the_probe_frames_name_their_request_and_replies_are_recognised() -> None:
    vip = bytes([198, 18, 0, 200])
    frame = request_frame(b"\x02\x00\x00\x00\x00\x09", 77, vip)
    assert frame[:6] == b"\xff" * 6 and frame[22:28] == probe_mac(77) and frame[38:42] == vip
    # the reply a node sends: sender = the VIP and its MAC, target = the probe's address
    node_mac = bytes.fromhex("025bc61200 01".replace(" ", ""))
    reply = probe_mac(77) + node_mac + b"\x08\x06" + bytes.fromhex("0001080006040002")
    reply += node_mac + vip + probe_mac(77) + bytes(4)
    assert classify(reply, vip) == ("R", 77, A, 2)
    gratuitous = b"\xff" * 6 + node_mac + b"\x08\x06" + bytes.fromhex("0001080006040001")
    gratuitous += node_mac + vip + bytes(6) + vip
    assert classify(gratuitous, vip) == ("G", None, A, 1)
    assert classify(reply, bytes([198, 18, 0, 201])) is None


def test_records_are_read_whole_and_checked() -> None:
    data = judge.record_line(1) + judge.record_line(2) + b"0000000003 deadbeef\n" + judge.record_line(4)[:7]
    assert judge.parse_records(data) == {1, 2}


def test_lost_records_are_the_acknowledged_ones_the_primary_lacks() -> None:
    acks, failed = judge.parse_workload(
        ["A 1 1.0 1.1 node1", "F 2 1.1 1.6 timeout", "A 3 1.6 1.7 node2", "garbage", "A 4 1.7 1.8 node2"]
    )
    assert failed == 1 and [a.number for a in acks] == [1, 3, 4]
    assert judge.lost_records(acks, {1, 2, 4}) == [3]
    assert judge.acknowledging_nodes(acks, 0, 10) == {"node1": 1, "node2": 2}


def test_the_longest_wait_includes_the_edges_of_the_window() -> None:
    times = [1.0, 2.0, 2.5, 9.0, 9.1]
    assert judge.longest_wait(times, 2.2, 9.05) == pytest.approx(6.5)  # 2.5 -> 9.0
    assert judge.longest_wait(times, 1.5, 20.0) == pytest.approx(10.9)  # 9.1 -> the end
    assert judge.longest_wait(times, 0.0, 0.5) == pytest.approx(0.5)  # no ack at all


LOG = """2026-12-04 22:19:25,000 INFO PRIM (Ready) -> ALONE (Transient): peer absent
2026-12-04 22:19:25,045 INFO ALONE (Transient) -> WAIT (Transient): witness lost
2026-12-04 22:19:25,058 INFO running stop_prim ALONE WAIT stopwait
2026-12-04 22:19:27,045 INFO replication primary stopped
2026-12-04 22:19:30,000 INFO WAIT (Transient) -> SECOND (Transient): peer is primary
2026-12-04 22:19:31,000 INFO SECOND (Ready) -> ALONE (Transient): peer absent
2026-12-04 22:19:31,500 ERROR the replication process did not stop within 30 s: killed
2026-12-04 22:19:31,600 INFO replication secondary stopped
"""


def test_replication_stops_are_timed_from_the_role_change() -> None:
    lines = judge.log_lines(LOG, 0.0)
    start = lines[0][0]
    stops = judge.rfs_stops("node1", lines, start, start + 60)
    # PRIM -> ALONE keeps the replication; ALONE -> WAIT stops it 2 s later; WAIT -> SECOND had
    # none running; SECOND -> ALONE stopped it only by a kill.
    assert [(s.change, s.seconds, s.killed) for s in stops] == [
        ("ALONE -> WAIT", 2.0, False),
        ("SECOND -> ALONE", 0.6, True),
    ]


def test_a_stop_after_the_window_is_not_a_stop() -> None:
    lines = judge.log_lines(LOG, 0.0)
    start = lines[0][0]
    stops = judge.rfs_stops("node1", lines, start, start + 1.0)
    assert [(s.change, s.seconds) for s in stops] == [("ALONE -> WAIT", None)]


def test_postgres_commits_are_read_like_records_and_lost_the_same_way() -> None:
    # pgworkload prints what workload prints, its node being "pg"
    acks, failed = judge.parse_workload(
        ["A 10 1.0 1.1 pg", "F 11 1.1 4.1 timeout", "A 12 4.2 4.3 pg", "A 13 4.3 4.4 pg"]
    )
    assert failed == 1 and [a.number for a in acks] == [10, 12, 13]
    ids = judge.parse_ids("10\n11\n13\n\nERROR: something\n 14 \n")
    assert ids == {10, 11, 13, 14}
    assert judge.lost_records(acks, ids) == [12]
    assert judge.parse_ids("") == set()
