"""A farm module in SafeKit's shape on three lab nodes: two groups on two ports with different node
sets and powers, one without `<cluster>`, rules with filters; real daemons, real connections.

- `web` (port 8080, `on_port`): no `<cluster>`, so every node of cluster.xml with power 1.
- `api` (port 8081, `on_ipid`): node2 (power 1) and node3 (power 2); node1 never serves it.

The client counts who answered. Long-lived keep-alive connections are held across a node's death
and its return: the healthy nodes' connections must keep being answered by the same node, with no
reset, while only the dead node's buckets move in each group.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from farm_lab import (
    client_sources,
    installed,
    jhash_bucket,
    lab_up,
    module_dir,
    tcp_out_resets,
)
from farm_lab import farm_map as shared_farm_map
from farm_lab import wait_members as shared_wait_members

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

MODULE = "shape"
NODES = ("node1", "node2", "node3")
WEB, API = 8080, 8081
CONNECTIONS = 120
HELD = 24  # keep-alive connections held per port

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off">
  <farm><lan name="default"/></farm>
  <vip>
    <interface_list>
      <interface check="on">
        <virtual_interface type="vmac_invisible">
          <virtual_addr addr="{vip}" where="alias"/>
        </virtual_interface>
      </interface>
    </interface_list>
    <loadbalancing_list>
      <group name="web">
        <rule virtual_addr="*" port="{web}" proto="tcp" filter="on_port"/>
      </group>
      <group name="api">
        <cluster>
          <host name="node2" power="1"/>
          <host name="node3" power="2"/>
        </cluster>
        <rule virtual_addr="{vip}" port="{api}" proto="tcp" filter="on_ipid"/>
        <rule virtual_addr="*" proto="arp"/>
      </group>
    </loadbalancing_list>
  </vip>
  <user nicestoptimeout="5s" forcestoptimeout="5s" logging="userlog">
    <var name="PORTS" value="{web} {api}"/>
  </user>
</service>
</safe>
"""

# An HTTP/1.1 server per port (keep-alive: a connection lives across requests), answering the
# node's name; every node runs both (node1's api server must never be reached).
START_BOTH = """#!/bin/sh
mkdir -p /srv/www
hostname > /srv/www/who
cd /srv/www
for port in $PORTS; do
setsid python3 -c '
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 512
    allow_reuse_address = True
    daemon_threads = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
' "$port" >/dev/null 2>&1 < /dev/null &
echo $! >> /run/shapeweb.pids
done
up='import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)'
for port in $PORTS; do
  ok=""
  for i in $(seq 50); do python3 -c "$up" "$port" 2>/dev/null && ok=1 && break; sleep 0.1; done
  [ -n "$ok" ] || exit 1
done
exit 0
"""

STOP_BOTH = """#!/bin/sh
[ -f /run/shapeweb.pids ] && kill $(cat /run/shapeweb.pids) 2>/dev/null
rm -f /run/shapeweb.pids
exit 0
"""

# On the client: who answers new connections to a port (each from a source address in turn).
PROBE = r"""
import json, socket, sys
vip, port, count, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")
answers, failures, seen = {}, 0, []
for i in range(count):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.bind((sources[i % len(sources)], 0))
        s.connect((vip, port))
        s.sendall(b"GET /who HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        who = data.split(b"\r\n\r\n", 1)[1].decode().strip()
        answers[who] = answers.get(who, 0) + 1
        seen.append([*s.getsockname(), who])
    except OSError:
        failures += 1
    finally:
        s.close()
print(json.dumps({"answers": answers, "failures": failures, "seen": seen}))
"""

# On the client: hold keep-alive connections; on each line read from stdin, ask every connection
# still alive who it is, and print one JSON line: per connection, the node or "error: ...".
HOLDER = r"""
import json, socket, sys
vip, ports, count, sources = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4].split(",")
conns = []
for port in ports:
    for i in range(count):
        s = socket.socket()
        s.settimeout(1.5)
        s.bind((sources[i % len(sources)], 0))
        s.connect((vip, int(port)))
        conns.append((port, s))

def ask(s):
    s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed by the server")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    fields = dict(l.split(b":", 1) for l in head.split(b"\r\n")[1:])
    length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed by the server")
        body += chunk
    return body.decode().strip()

dead = set()
for line in sys.stdin:
    dead.update(json.loads(line))  # connections of a node known dead: not asked (no timeout)
    out = []
    for i, (port, s) in enumerate(conns):
        if i in dead:
            out.append([port, "skipped"])
            continue
        try:
            out.append([port, ask(s), *s.getsockname()])
        except OSError as exc:
            dead.add(i)
            out.append([port, f"error: {exc!r}"])
    print(json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def lab(root_required: None) -> Iterator[Lab]:
    with lab_up("h20a") as lab:
        yield lab


def vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


@pytest.fixture(scope="module")
def cluster(lab: Lab) -> Iterator[LabCluster]:
    path = module_dir(
        USERCONFIG.format(vip=vip(lab), web=WEB, api=API),
        {"start_both": START_BOTH, "stop_both": STOP_BOTH},
        MODULE,
    )
    with installed(lab, path, NODES) as cluster:
        yield cluster


def farm_map(cluster: LabCluster, node: str) -> dict[str, Any]:
    return shared_farm_map(cluster, node, MODULE)


def groups_of(cluster: LabCluster, node: str) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in farm_map(cluster, node)["groups"]}


def wait_members(cluster: LabCluster, nodes: list[str], timeout: float = 20.0) -> None:
    shared_wait_members(cluster, nodes, nodes, timeout, MODULE)


def bucket_of(source: str, sport: int, seed: int) -> int:
    """The bucket of a TCP connection under `on_port` (and `on_ipid`, which hashes the same for TCP)."""
    key = ipaddress.IPv4Address(source).packed + sport.to_bytes(2, "big") + b"\0\0"
    return jhash_bucket(key, seed)


def probe(
    lab: Lab, port: int, sources: list[str], owners: list[str | None] | None = None, seed: int = 0
) -> dict[str, int]:
    """New connections to `port`: who answered each. With `owners` (the group's map), every answer
    must come from the owner of the connection's bucket as the kernel hashes it."""
    out = lab.exec(
        "client",
        ["python3", "-c", PROBE, vip(lab), str(port), str(CONNECTIONS), ",".join(sources)],
        timeout=CONNECTIONS * 2 + 60,
        check=True,
    ).stdout
    result = json.loads(out)
    assert result["failures"] == 0, result
    answers: dict[str, int] = result["answers"]
    assert sum(answers.values()) == CONNECTIONS
    if owners is not None:
        wrong = [row for row in result["seen"] if owners[bucket_of(row[0], row[1], seed)] != row[2]]
        assert wrong == [], f"answered by a node that does not own the bucket: {wrong[:5]}"
    return answers


class Holder:
    """Keep-alive connections held by the client across membership changes."""

    def __init__(self, lab: Lab, sources: list[str]) -> None:
        argv = ["python3", "-c", HOLDER, vip(lab), f"{WEB},{API}", str(HELD), ",".join(sources)]
        self.process = subprocess.Popen(
            lab.exec_argv("client", argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, skip: list[int] | None = None) -> list[tuple[str, str]]:
        """Per held connection: (port, who answered or the error); `skip`: indexes not to ask."""
        return [(row[0], row[1]) for row in self.ask_rows(skip)]

    def ask_rows(self, skip: list[int] | None = None) -> list[list[Any]]:
        """Per held connection: [port, who, source address, source port] (no address on error)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(skip or []) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the holder died"
        rows: list[list[Any]] = json.loads(line)
        return rows

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def moved_only_from(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], node: str) -> None:
    """In every group, the buckets whose owner changed are exactly `node`'s (before) or to `node` (after)."""
    for name in before:
        old, new = before[name]["owners"], after[name]["owners"]
        changed = {b for b in range(256) if old[b] != new[b]}
        involved = {b for b in range(256) if node in (old[b], new[b])}
        assert changed == involved, f"group {name}: buckets of healthy nodes moved too"


def test_a_safekit_shaped_farm_loads_and_balances_each_group(lab: Lab, cluster: LabCluster) -> None:
    for node in NODES:
        cluster.safekit(node, "start", "-m", MODULE)
    for node in NODES:
        cluster.wait_state(node, MODULE, "UP")
    wait_members(cluster, list(NODES))
    log = cluster.log("node1", MODULE)
    assert "web: node1 (power 1), node2 (power 1), node3 (power 1) - no <cluster>" in log, log[-2000:]
    assert "api: node2 (power 1), node3 (power 2)" in log
    maps = {n: groups_of(cluster, n) for n in NODES}
    for name in ("web", "api"):
        assert len({tuple(maps[n][name]["owners"]) for n in NODES}) == 1, f"nodes disagree on {name}"
    assert sorted(maps["node1"]["web"]["shares"].values()) == [85, 85, 86]
    assert maps["node1"]["api"]["shares"] == {"node2": 85, "node3": 171}
    assert maps["node1"]["api"]["owned_here"] == []
    state = cluster.state("node2", MODULE)
    assert state["groups"]["api"]["buckets"] == 85, state
    text = cluster.safekit("node1", "farm", "map", "-m", MODULE).stdout  # what the operator reads
    assert "group web (every farm node, power 1):" in text and "group api:" in text, text
    assert re.search(r"group api:.*\n(?:.*\n)*?\s+node3\s+power 2\s+171 buckets", text), text

    sources = client_sources(lab)
    seed = farm_map(cluster, "node1")["seed"]
    web = probe(lab, WEB, sources, maps["node1"]["web"]["owners"], seed)
    api = probe(lab, API, sources, maps["node1"]["api"]["owners"], seed)
    print(f"web answers {web}, api answers {api}, each from the owner of its bucket")
    assert set(web) == set(NODES) and min(web.values()) >= CONNECTIONS / 3 / 3, web
    assert set(api) == {"node2", "node3"}, f"node1 is not in group api but answered: {api}"
    assert api["node3"] > api["node2"], f"node3 has power 2 in api: {api}"


def test_a_node_leaving_and_returning_moves_only_its_buckets_and_resets_nothing(
    lab: Lab, cluster: LabCluster
) -> None:
    sources = client_sources(lab)
    seed = farm_map(cluster, "node1")["seed"]
    group_of = {str(WEB): "web", str(API): "api"}
    holder = Holder(lab, sources)
    away: Holder | None = None
    try:
        first = holder.ask()
        assert not [who for _, who in first if who.startswith("error")], first
        assert {who for _, who in first} == set(NODES), f"held connections should reach every node: {first}"
        healthy = [i for i, (_, who) in enumerate(first) if who != "node3"]
        resets = {h: tcp_out_resets(lab, h) for h in ("node1", "node2", "client")}
        before = groups_of(cluster, "node1")

        lab.kill("node3")  # a power cut: node3's own connections die with it
        wait_members(cluster, ["node1", "node2"], timeout=10)
        after_leave = groups_of(cluster, "node1")
        moved_only_from(before, after_leave, "node3")
        assert after_leave["api"]["shares"] == {"node2": 256}
        second = holder.ask(skip=[i for i, (_, who) in enumerate(first) if who == "node3"])
        assert [second[i] for i in healthy] == [first[i] for i in healthy], "a healthy connection broke"
        web = probe(lab, WEB, sources, after_leave["web"]["owners"], seed)
        api = probe(lab, API, sources, after_leave["api"]["owners"], seed)
        assert set(web) == {"node1", "node2"} and set(api) == {"node2"}, (web, api)
        # Connections opened while node3 is away: some fall in node3's buckets, which it takes back
        # when it returns; they must stay on node1 / node2.
        away = Holder(lab, sources)
        held_away = away.ask_rows()
        assert not [r for r in held_away if r[1].startswith("error")], held_away

        lab.start("node3")
        cluster.start_daemon("node3")
        cluster.safekit("node3", "start", "-m", MODULE)
        cluster.wait_state("node3", MODULE, "UP")
        wait_members(cluster, list(NODES))
        after_join = groups_of(cluster, "node1")
        moved_only_from(after_leave, after_join, "node3")
        for name in ("web", "api"):
            assert after_join[name]["owners"] == before[name]["owners"], f"{name}: not the map of before"
        third = holder.ask()
        assert [third[i] for i in healthy] == [first[i] for i in healthy], "a healthy connection broke"
        moved = [
            r
            for r in held_away
            if after_join[group_of[str(r[0])]]["owners"][bucket_of(r[2], r[3], seed)] == "node3"
        ]
        again = away.ask_rows()
        assert [r[:2] for r in again] == [r[:2] for r in held_away], "a connection opened while away broke"
        assert moved, "no held connection fell in a bucket node3 took back: the join was not exercised"
        assert {h: tcp_out_resets(lab, h) - n for h, n in resets.items()} == dict.fromkeys(resets, 0)
        print(
            f"{len(healthy)} connections of healthy nodes held across a leave and a join; "
            f"{len(moved)} of {len(held_away)} opened while node3 was away were in buckets it took back "
            "and stayed on their node; 0 resets"
        )
        api = probe(lab, API, sources, after_join["api"]["owners"], seed)
        assert set(api) == {"node2", "node3"}, api
    finally:
        holder.close()
        if away is not None:
            away.close()
