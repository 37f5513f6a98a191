"""The PostgreSQL workload's pure parts: the statement of each commit, what psql says back, and
buffers that stay bounded."""

from __future__ import annotations

from safekit.chaos import judge, pgworkload


def test_one_statement_per_commit_returning_its_id() -> None:
    assert pgworkload.statement(42) == b"INSERT INTO chaos_commits (id) VALUES (42) RETURNING id;\n"
    argv = pgworkload.psql_argv("198.18.0.200", 5432)
    assert argv[:6] == ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    assert "host=198.18.0.200 port=5432" in argv[-1] and "connect_timeout=2" in argv[-1]


def test_only_the_id_printed_back_acknowledges_it() -> None:
    assert pgworkload.is_ack("42", 42)
    assert not pgworkload.is_ack("41", 42)
    assert not pgworkload.is_ack("", 42)
    assert not pgworkload.is_ack("INSERT 0 1", 42)


def test_lines_are_cut_from_chunks_and_a_partial_line_stays_bounded() -> None:
    lines = pgworkload.Lines(limit=8)
    assert lines.feed(b"4") == []
    assert lines.feed(b"2\n43") == ["42"]
    assert lines.feed(b"\n") == ["43"]
    assert lines.feed(b"x" * 100) == [] and len(lines.partial) == 8 and lines.overflowed
    tail = pgworkload.Tail(limit=5)
    for _ in range(100):
        tail.feed(b"abcdef")
    assert tail.data == b"bcdef"


def test_the_reason_is_the_last_thing_psql_complained_of() -> None:
    refused = (
        'psql: error: connection to server at "198.18.0.200", port 5432 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?\n"
    )
    assert pgworkload.reason(refused, "psql_ended") == "connection_refused"
    assert pgworkload.reason("FATAL:  the database system is starting up\n", "x") == "starting_up"
    lost = "FATAL:  terminating connection due to administrator command\n"
    lost += "server closed the connection unexpectedly"
    assert pgworkload.reason(lost, "x") == "server_closed"
    assert pgworkload.reason("", "psql_ended") == "psql_ended"


def test_its_lines_are_those_the_judge_reads() -> None:
    line = f"A 7 1.000000 1.010000 {pgworkload.NODE}"
    acks, failed = judge.parse_workload([line, "F 8 1.01 4.01 timeout"])
    assert [(a.number, a.node) for a in acks] == [(7, "pg")] and failed == 1
