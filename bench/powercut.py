"""What the failover benchmark and its baselines share: the client probe, the responder, and one
power cut measured from the client's side.

The outage of one run is from the power cut of the serving node (the moment `lab kill` pulled its
cables, `Lab.power_cut`'s `cut_at`: not the start of `lab kill`, which may wait for the lab's lock,
nor its end) to the first answer, through the
VIP, from the node expected to take over (or, `expect` "*", from whoever answers: a mirror's survivor
is the only one left). HTTP answers are read from their body; a probe by command (a database's own
client, COMMAND_PROBE) counts a zero exit as the answer.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import time

from safekit.lab import Lab

RESPONDER_PORT = 7000

RESPONDER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {port})); s.listen(128)
name = socket.gethostname().encode() + b"\\n"
while True:
    c, _ = s.accept()
    try: c.sendall(name)
    finally: c.close()
"""


# Runs on the client: starts a new connection to the VIP every 50 ms, each with a 200 ms connect
# timeout, without waiting for the previous one (a SYN lost to a dead node must not hide the next
# probes); exits when `expect` answers ("*": any answer, from attempts started once a line is read on
# stdin, sent after the cut: the serving node answered until then), printing when that answer
# arrived (monotonic clock, then wall clock). An HTTP answer's body names who served it.
PROBE = """
import asyncio, sys, time
vip, port, expect, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
path = sys.argv[5] if len(sys.argv) > 5 else "/"

async def attempt(done):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, port), 0.2)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        writer.write(f"GET {path} HTTP/1.0\\r\\nHost: {vip}\\r\\n\\r\\n".encode())
        data = await asyncio.wait_for(reader.read(), 1.0)
    except (OSError, asyncio.TimeoutError):
        return
    finally:
        writer.close()
    if data.startswith(b"HTTP/"):
        head, _, data = data.partition(b"\\r\\n\\r\\n")
        if b" 200 " not in head.split(b"\\r\\n")[0]:
            return
    who = data.split(b"served by ")[-1].strip().decode() if b"served by " in data else data.strip().decode()
    if (who == expect or (expect == "*" and data)) and not done.done():
        done.set_result((time.monotonic(), time.time()))

async def main():
    done = asyncio.get_running_loop().create_future()
    print("ready", flush=True)
    if expect == "*":
        sys.stdin.readline()
    end = time.monotonic() + limit
    tasks = set()
    while time.monotonic() < end and not done.done():
        task = asyncio.ensure_future(attempt(done))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        try:
            await asyncio.wait_for(asyncio.shield(done), 0.05)
        except asyncio.TimeoutError:
            pass
    if done.done():
        print("answered", *done.result(), flush=True)
        return 0
    print("timeout", flush=True)
    return 1

sys.exit(asyncio.run(main()))
"""

# The same on the client with a command instead of a connection (a database's own client: psql,
# mariadb): one started every 100 ms without waiting for the previous ones, from when a line is read
# on stdin (sent after the cut: the serving node answered until then); the first to exit 0 is the
# answer. argv: limit, then the command.
COMMAND_PROBE = """
import asyncio, sys, time
limit, command = float(sys.argv[1]), sys.argv[2:]

async def attempt(done):
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    except OSError:
        return
    try:
        code = await asyncio.wait_for(proc.wait(), 5.0)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return
    if code == 0 and not done.done():
        done.set_result((time.monotonic(), time.time()))

async def main():
    done = asyncio.get_running_loop().create_future()
    print("ready", flush=True)
    sys.stdin.readline()
    end = time.monotonic() + limit
    tasks = set()
    while time.monotonic() < end and not done.done():
        task = asyncio.ensure_future(attempt(done))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        try:
            await asyncio.wait_for(asyncio.shield(done), 0.1)
        except asyncio.TimeoutError:
            pass
    if done.done():
        print("answered", *done.result(), flush=True)
        return 0
    print("timeout", flush=True)
    return 1

sys.exit(asyncio.run(main()))
"""


def power_cut_outage(lab: Lab, victim: str, survivor: str, vip: str, port: int) -> float:
    """Kill `victim` at a random moment while the client probes `vip`; seconds from the cut (its cables
    pulled) until `survivor` answers."""
    outage, _, _ = power_cut_answer(lab, victim, ["python3", "-c", PROBE, vip, str(port), survivor, "60"])
    return outage


def power_cut_answer(
    lab: Lab, victim: str, probe_argv: list[str], limit: float = 60
) -> tuple[float, float, float]:
    """Kill `victim` at a random moment while `probe_argv` (PROBE or COMMAND_PROBE on the client)
    probes; (seconds from the cut - the moment `lab kill` pulled the victim's cables - to the first
    answer, seconds `lab kill` took, the answer's wall-clock time). `lab kill` waits only for the
    lock of its own lab (ADR 0066; before, another session's `lab up` could hold it for a minute while
    the victim still ran); the cut's moment is taken inside it either way. The probe reads a line on
    its stdin once the victim is down (the probes that wait for it)."""
    probe = subprocess.Popen(
        lab.exec_argv("client", probe_argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert probe.stdout is not None and probe.stdin is not None
    if probe.stdout.readline().strip() != "ready":
        raise RuntimeError("the client probe did not start")
    time.sleep(random.uniform(0.5, 1.5))
    asked_at = time.monotonic()
    cut = lab.power_cut(victim)
    down_at = time.monotonic()
    with contextlib.suppress(BrokenPipeError):  # a probe that does not wait for it may be gone
        probe.stdin.write("cut\n")
        probe.stdin.close()
    line = probe.stdout.readline().split()
    probe.wait(timeout=limit + 10)
    if not line or line[0] != "answered":
        raise RuntimeError(f"no answer through the VIP {limit:g} s after the power cut of {victim}")
    # The probe's clock is this one: CLOCK_MONOTONIC is the machine's, the lab has no time namespace.
    return float(line[1]) - cut.cut_at, down_at - asked_at, float(line[2])
