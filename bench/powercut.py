"""What the failover benchmark and its baselines share: the client probe, the responder, and one
power cut measured from the client's side.

The outage of one run is from `lab kill` of the serving node to the first answer, through the
VIP, from the node expected to take over.
"""

from __future__ import annotations

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
# probes); exits when `expect` answers, printing when that answer arrived.
PROBE = """
import asyncio, sys, time
vip, port, expect, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

async def attempt(done):
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(vip, port), 0.2)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        writer.write(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = await asyncio.wait_for(reader.read(), 1.0)
    except (OSError, asyncio.TimeoutError):
        return
    finally:
        writer.close()
    who = data.split(b"served by ")[-1].strip().decode() if b"served by " in data else data.strip().decode()
    if who == expect and not done.done():
        done.set_result(time.monotonic())

async def main():
    done = asyncio.get_running_loop().create_future()
    end = time.monotonic() + limit
    print("ready", flush=True)
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
        print("answered", done.result(), flush=True)
        return 0
    print("timeout", flush=True)
    return 1

sys.exit(asyncio.run(main()))
"""


def power_cut_outage(lab: Lab, victim: str, survivor: str, vip: str, port: int) -> float:
    """Kill `victim` at a random moment while the client probes `vip`; seconds until `survivor` answers."""
    probe = subprocess.Popen(
        lab.exec_argv("client", ["python3", "-c", PROBE, vip, str(port), survivor, "60"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdout is not None
    if probe.stdout.readline().strip() != "ready":
        raise RuntimeError("the client probe did not start")
    time.sleep(random.uniform(0.5, 1.5))
    killed_at = time.monotonic()
    lab.kill(victim)
    line = probe.stdout.readline().split()
    probe.wait(timeout=70)
    if not line or line[0] != "answered":
        raise RuntimeError(f"no answer from {survivor} through the VIP after the power cut of {victim}")
    return float(line[1]) - killed_at
