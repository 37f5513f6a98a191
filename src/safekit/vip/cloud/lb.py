"""Load-balancer mode: the cloud's load balancer sends traffic only to the node(s) whose probe
answers. The health endpoint on TCP 9010 (`/var/modules/AM/ready.txt`, 200 only where the module
is ready) is the default probe target, and a module is ready only after its VIPs were acquired.
Some probes cannot carry a path (Azure's TCP probes): with `probe_port` the provider also listens
on that TCP port while it holds the VIP, so the probe succeeds only on the serving node, as
ClusterLabs' azure-lb does with nc.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

from safekit.vip.cloud.base import CloudVipProvider, Option
from safekit.vip.provider import VipCheck, VipError, VipSpec, VipState

LB_OPTIONS: dict[str, Option] = {
    "probe_port": Option("also answer TCP connections on this port while serving (a TCP probe)"),
    "probe_host": Option("address to listen on for probe_port", default="0.0.0.0"),  # noqa: S104 - the probe comes from the LB
}


class LoadBalancerProvider(CloudVipProvider):
    """No cloud call: acquire marks the VIP held (so the module becomes ready and the health
    endpoint answers 200) and opens the probe port if one is configured; release undoes both."""

    os_address_default: ClassVar[str] = "off"
    OPTIONS: ClassVar[dict[str, Option]] = dict(LB_OPTIONS)

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.held = False
        self.probe_port: int | None = None
        if self.options.get("probe_port"):
            text = self.options["probe_port"]
            if not text.isdigit() or not 0 < int(text) < 65536 or int(text) == 9010:
                raise VipError(f"{self.name}: option probe_port={text!r}: give a free TCP port (not 9010)")
            self.probe_port = int(text)
        self._server: asyncio.AbstractServer | None = None

    async def _acquire(self) -> bool:
        changed = not self.held
        if self.probe_port is not None and self._server is None:
            self._server = await asyncio.start_server(
                _answer_probe, host=self.options["probe_host"], port=self.probe_port, reuse_address=True
            )
            changed = True
        self.held = True
        return await self.add_os_address() or changed

    async def _release(self) -> bool:
        changed = self.held or self._server is not None
        self.held = False
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        return await self.remove_os_address() or changed

    async def _check(self) -> VipCheck:
        if not self.held:
            return VipCheck(VipState.NOT_HELD, "not serving")
        local = await self.os_address_check()
        if local is not None and not local.held:
            return VipCheck(VipState.DEGRADED, f"serving, but the address is not on this node: {local}")
        return VipCheck(VipState.HELD)

    async def _validate(self) -> list[str]:
        lines = [
            "load-balancer mode: the probe targets the health endpoint, TCP 9010 /var/modules/AM/ready.txt"
        ]
        if self.probe_port is not None:
            lines.append(f"TCP probe port {self.probe_port} opened while serving")
        return lines


async def _answer_probe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
