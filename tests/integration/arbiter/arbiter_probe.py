"""Run on a lab host: ask the arbiter for a lease with the real client, one JSON line per answer.

    python arbiter_probe.py hold ADDR PORT KEYFILE NODE MODULE DURATION SECONDS
        renew every DURATION/3 for SECONDS (whatever the answers), then stop renewing
    python arbiter_probe.py until-granted ADDR PORT KEYFILE NODE MODULE DURATION SECONDS
        ask every 0.1 s until granted, for at most SECONDS

Each line: {"granted", "holder", "remaining", "sent_at", "recv_at", "detail"} (null answer fields
when nothing came back in time). Times are time.monotonic(), comparable between lab hosts (one
kernel).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from safekit.arbiter.client import ArbiterClient
from safekit.membership.clusterkey import load_key


async def main(argv: list[str]) -> None:
    mode, address, port, key_file, node, module, duration, seconds = argv
    client = ArbiterClient(address, int(port), load_key(key_file), node)
    lease = float(duration)
    end = time.monotonic() + float(seconds)
    try:
        while time.monotonic() < end:
            sent_at = time.monotonic()
            answer = await client.request(module, lease, timeout=min(1.0, lease / 3))
            line = {
                "sent_at": sent_at,
                "recv_at": time.monotonic(),
                "granted": None,
                "holder": None,
                "remaining": None,
                "detail": "no answer",
            }
            if answer is not None:
                line.update(
                    granted=answer.granted,
                    holder=answer.holder,
                    remaining=answer.remaining,
                    detail=answer.detail,
                    sent_at=answer.sent_at,
                )
            print(json.dumps(line), flush=True)
            if mode == "until-granted" and answer is not None and answer.granted:
                return
            pause = lease / 3 if mode == "hold" else 0.1
            await asyncio.sleep(max(0.0, min(pause - (time.monotonic() - sent_at), end - time.monotonic())))
    finally:
        client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
