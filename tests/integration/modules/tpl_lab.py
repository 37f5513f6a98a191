"""Helpers of the module template tests (the modules themselves are made and installed by
safekit.lab.modules, as a user would): logs for a post-mortem, waiting, the farm probes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

LOGS = Path("/var/tmp/safekit-tpl-logs")
"""Module logs and user logs of the last run, for a post-mortem."""


def save_logs(lab: Lab, cluster: LabCluster, modules: list[str], extra: tuple[str, ...] = ()) -> None:
    """Each node's module logs and user logs (and `extra` suffixes) into LOGS."""
    LOGS.mkdir(exist_ok=True)
    for node in cluster.nodes:
        if node in lab.require_state().faults.killed:
            continue
        for module in modules:
            for suffix in ("log", "userlog", *extra):
                out = lab.exec(node, ["cat", f"/var/log/safekit/modules/{module}.{suffix}"]).stdout
                if out:
                    (LOGS / f"{lab.name}.{node}.{module}.{suffix}").write_text(out)


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    """Call `check` until it returns something true; its last value, or AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout:g} s (last: {last!r})")


# Run on the client: `count` HTTP GETs of PATH at the VIP, each on a new connection, from each
# source address in turn. Prints JSON: the answers (body -> count) and the failures.
PROBE = r"""
import json, socket, sys
vip, port, path, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sources = sys.argv[5].split(",")
answers, failures = {}, 0
for i in range(count):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.bind((sources[i % len(sources)], 0))
        s.connect((vip, port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {vip}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        who = body.decode().strip() if b" 200 " in head.split(b"\r\n")[0] else head.split(b"\r\n")[0].decode()
        answers[who] = answers.get(who, 0) + 1
    except OSError:
        failures += 1
    finally:
        s.close()
print(json.dumps({"answers": answers, "failures": failures}))
"""


def client_sources(lab: Lab, count: int = 8) -> list[str]:
    """Extra source addresses on the client (.150 and up of LAN 0), added once: the farm hashes
    the client address, so several addresses reach several nodes."""
    network = lab.plan().lans[0].network
    sources = [str(network[150 + i]) for i in range(count)]
    have = lab.exec("client", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    for address in sources:
        if f" {address}/" not in have:
            lab.exec("client", ["ip", "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
    return sources


def probe(lab: Lab, vip: str, port: int, *, path: str, count: int, sources: list[str]) -> dict[str, Any]:
    out = lab.exec(
        "client",
        ["python3", "-c", PROBE, vip, str(port), path, str(count), ",".join(sources)],
        timeout=count * 2 + 60,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def farm_members(cluster: LabCluster, node: str, module: str) -> list[str]:
    out = cluster.safekit(node, "farm", "map", "-m", module, "--json", check=False)
    if out.returncode != 0:
        return []
    data = json.loads(out.stdout)
    return sorted(data.get("members", [])) if not data.get("pending_here") else []
