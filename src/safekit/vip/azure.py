"""Azure VIP providers (azure-mgmt-network + azure-identity, extra `safekit[azure]`):
`azure_route` (a /32 route in a route table whose next hop is this VM's IP), `azure_nic_ip` (a
secondary IP configuration moved from the NIC that has it to this VM's NIC), and `azure_lb`
(Azure Load Balancer: its probe targets the health endpoint, or `probe_port`, which this provider
opens only while it serves).

Every request pins `API_VERSION`; writes are long-running operations, waited for within the
deadline. Credentials: the VM's managed identity (azure-identity, token cached by it). Identity:
Azure IMDS, or options. The decisions (`route_is_ours`, `nic_plan`) are pure.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Sequence
from typing import Any, ClassVar

try:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.network.models import NetworkInterfaceIPConfiguration, Route, Subnet
except ImportError as exc:  # the message load_provider shows
    raise ImportError(f"{exc}: the Azure providers need pip install 'safekit[azure]'") from exc

from safekit.vip.cloud.base import CloudVipProvider, Option
from safekit.vip.cloud.lb import LoadBalancerProvider
from safekit.vip.cloud.metadata import AzureIdentity, AzureImds, azure_identity, metadata_url
from safekit.vip.cloud.retry import Verdict, current_deadline
from safekit.vip.provider import VipCheck, VipError, VipSpec, VipState

API_VERSION = "2024-05-01"
"""Microsoft.Network api-version of every call: pinned, so that an SDK upgrade changes nothing on
the wire (and the test fake accepts only this one, as ARM refuses unknown versions)."""
IDENTITY_OPTIONS: dict[str, Option] = {
    "subscription_id": Option("subscription (default: from IMDS)"),
    "resource_group": Option("resource group of the network resources (default: the VM's, from IMDS)"),
    "vm_name": Option("this VM's name (default: from IMDS)"),
    "private_ip": Option("this VM's private IP (default: from IMDS)"),
    "mac": Option("this VM's NIC MAC (default: from IMDS)"),
    "identity_client_id": Option("client id of a user-assigned managed identity (default: system-assigned)"),
}


# ----------------------------------------------------------------------------- pure parts
def route_is_ours(route: Any, prefix: str, my_ip: str) -> bool:
    return (
        route is not None
        and route.address_prefix == prefix
        and str(route.next_hop_type) in ("VirtualAppliance", "RouteNextHopType.VIRTUAL_APPLIANCE")
        and route.next_hop_ip_address == my_ip
    )


def holds(nic: Any, address: str) -> bool:
    return any(c.private_ip_address == address for c in nic.ip_configurations or [])


def nic_plan(nics: Sequence[Any], mine: Any, address: str) -> tuple[list[Any], bool]:
    """(other NICs to remove `address` from, whether to add it to `mine`)."""
    others = [n for n in nics if n.name != mine.name and holds(n, address)]
    return others, not holds(mine, address)


def same_mac(a: str | None, b: str) -> bool:
    def norm(mac: str) -> str:
        return mac.upper().replace("-", "").replace(":", "")

    return a is not None and norm(a) == norm(b)


def classify(exc: BaseException) -> Verdict:
    if isinstance(exc, ClientAuthenticationError):
        return Verdict.FAIL
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        return Verdict.RETRY if status == 429 or status >= 500 else Verdict.FAIL
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return Verdict.RETRY
    return Verdict.FAIL


# ----------------------------------------------------------------------------- providers
def _loopback_policy(credential: Any) -> Any:
    """ARM's bearer-token policy, allowed over plain http: only for an endpoint on loopback."""

    class LoopbackAuthenticationPolicy(ARMChallengeAuthenticationPolicy):
        def on_request(self, request: Any) -> None:
            request.context["enforce_https"] = False
            super().on_request(request)

    return LoopbackAuthenticationPolicy(credential, "https://management.azure.com/.default")


class _AzureProvider(CloudVipProvider):
    cloud = "azure"

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        endpoint = self.options.get("endpoint") or ""
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        if endpoint.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
            raise VipError(f"{self.name}: endpoint {endpoint}: plain http only on loopback (bearer tokens)")
        self.imds = AzureImds(metadata_url("azure", self.options.get("metadata_url")))
        self._identity: AzureIdentity | None = None
        self._client: Any = None
        self._credential: Any = None

    def _classify(self, exc: BaseException) -> Verdict:
        return classify(exc)

    async def identity(self) -> AzureIdentity:
        if self._identity is None:
            self._identity = await asyncio.to_thread(azure_identity, self.imds, self.options)
        return self._identity

    @property
    def resource_group(self) -> str:
        assert self._identity is not None
        return self.options.get("resource_group") or self._identity.resource_group

    def client(self) -> Any:
        if self._client is None:
            assert self._identity is not None
            client_id = self.options.get("identity_client_id") or None
            self._credential = ManagedIdentityCredential(client_id=client_id, retry_total=1)
            endpoint = self.options.get("endpoint") or None
            extra: dict[str, Any] = {}
            if (endpoint or "").startswith("http://"):  # loopback only (checked at load): a test fake
                extra["authentication_policy"] = _loopback_policy(self._credential)
            self._client = NetworkManagementClient(
                self._credential,
                self._identity.subscription_id,
                base_url=endpoint,
                retry_total=0,  # ours are bounded by the deadline
                connection_timeout=min(2.0, self.attempt_timeout),
                read_timeout=self.attempt_timeout,
                polling_interval=0.5,
                **extra,
            )
        return self._client

    async def wait(self, poller: Any) -> Any:
        """Waits for a long-running operation within the deadline (the SDK polls its status URL)."""
        remaining = current_deadline().remaining()
        if remaining <= 0:
            raise self.fail("no time left to wait for the operation")
        result = await self.api(
            "Microsoft.Network/locations/operations/read",
            lambda _t: poller.result(timeout=max(0.01, current_deadline().remaining())),
        )
        if not poller.done():
            raise self.fail("the operation was still running when the time bound ran out")
        return result


class AzureRouteProvider(_AzureProvider):
    """A /32 route `route_name` in `route_table` with next hop type VirtualAppliance = this VM's IP
    (the NIC needs IP forwarding); the VIP is added to the node's interface."""

    name = "azure_route"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "route_table": Option("the route table's name", required=True),
        "route_name": Option("the route's name in it (default: safekit-<VIP with dashes>)"),
        **IDENTITY_OPTIONS,
    }

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.prefix = f"{spec.address}/32"
        self.route_name = self.options.get("route_name") or "safekit-" + str(spec.address).replace(".", "-")

    async def _route(self) -> Any:
        await self.identity()
        client = self.client()

        def get(_t: float) -> Any:
            try:
                return client.routes.get(
                    self.resource_group, self.options["route_table"], self.route_name, api_version=API_VERSION
                )
            except ResourceNotFoundError:
                return None

        return await self.api("Microsoft.Network/routeTables/routes/read", get)

    async def _acquire(self) -> bool:
        identity = await self.identity()
        await self.add_os_address()
        if route_is_ours(await self._route(), self.prefix, identity.private_ip):
            return False
        client = self.client()
        route = Route(
            address_prefix=self.prefix,
            next_hop_type="VirtualAppliance",
            next_hop_ip_address=identity.private_ip,
        )
        poller = await self.api(
            "Microsoft.Network/routeTables/routes/write",
            lambda _t: client.routes.begin_create_or_update(
                self.resource_group,
                self.options["route_table"],
                self.route_name,
                route,
                api_version=API_VERSION,
            ),
        )
        await self.wait(poller)
        return True

    async def _release(self) -> bool:
        # The route stays until the next primary points it at itself (one write, no gap).
        return await self.remove_os_address()

    async def _check(self) -> VipCheck:
        identity = await self.identity()
        route = await self._route()
        if route_is_ours(route, self.prefix, identity.private_ip):
            local = await self.os_address_check()
            if local is not None and not local.held:
                return VipCheck(VipState.DEGRADED, f"routed here but not on this node: {local}")
            return VipCheck(VipState.HELD)
        where = "no route" if route is None else f"next hop {route.next_hop_ip_address}"
        return VipCheck(VipState.NOT_HELD, f"route {self.options['route_table']}/{self.route_name}: {where}")

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        route = await self._route()
        return [
            f"identity: {identity.vm_name} ({identity.private_ip}) in {self.resource_group}",
            f"Microsoft.Network/routeTables/routes/read: allowed ({'exists' if route else 'no route yet'})",
            "Microsoft.Network/routeTables/routes/write: no dry run in ARM; checked at the first acquire",
        ]


class AzureNicIpProvider(_AzureProvider):
    """A secondary IP configuration `ip_config_name` with the VIP, moved from the NIC that has it
    (in the resource group) to this VM's NIC (found by `nic` or by MAC), each write waited for."""

    name = "azure_nic_ip"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "nic": Option("this VM's NIC name (default: the NIC of the resource group with this VM's MAC)"),
        "ip_config_name": Option("name of the IP configuration that carries the VIP", default="safekit-vip"),
        **IDENTITY_OPTIONS,
    }

    async def _nics(self) -> tuple[list[Any], Any]:
        identity = await self.identity()
        client = self.client()
        nics: list[Any] = await self.api(
            "Microsoft.Network/networkInterfaces/read",
            lambda _t: list(client.network_interfaces.list(self.resource_group, api_version=API_VERSION)),
        )
        wanted = self.options.get("nic")
        mine = next(
            (n for n in nics if (n.name == wanted if wanted else same_mac(n.mac_address, identity.mac))), None
        )
        if mine is None:
            raise self.fail(
                f"this VM's NIC ({wanted or 'MAC ' + identity.mac}) "
                f"is not in resource group {self.resource_group}"
            )
        return nics, mine

    async def _put(self, nic: Any) -> None:
        client = self.client()
        poller = await self.api(
            "Microsoft.Network/networkInterfaces/write",
            lambda _t: client.network_interfaces.begin_create_or_update(
                self.resource_group, nic.name, nic, api_version=API_VERSION
            ),
        )
        await self.wait(poller)

    async def _acquire(self) -> bool:
        address = str(self.spec.address)
        nics, mine = await self._nics()
        others, add = nic_plan(nics, mine, address)
        # a private IP belongs to one NIC at a time: the other NIC lets go first
        for nic in others:
            nic.ip_configurations = [c for c in nic.ip_configurations if c.private_ip_address != address]
            await self._put(nic)
        if add:
            primary = next((c for c in mine.ip_configurations if c.primary), mine.ip_configurations[0])
            mine.ip_configurations = [
                c for c in mine.ip_configurations if c.name != self.options["ip_config_name"]
            ]
            mine.ip_configurations.append(
                NetworkInterfaceIPConfiguration(
                    name=self.options["ip_config_name"],
                    private_ip_address=address,
                    private_ip_allocation_method="Static",
                    subnet=Subnet(id=primary.subnet.id),
                    primary=False,
                )
            )
            await self._put(mine)
        return await self.add_os_address() or add or bool(others)

    async def _release(self) -> bool:
        address = str(self.spec.address)
        changed = await self.remove_os_address()
        _, mine = await self._nics()
        if holds(mine, address):
            mine.ip_configurations = [c for c in mine.ip_configurations if c.private_ip_address != address]
            await self._put(mine)
            changed = True
        return changed

    async def _check(self) -> VipCheck:
        nics, mine = await self._nics()
        address = str(self.spec.address)
        if holds(mine, address):
            local = await self.os_address_check()
            if local is not None and not local.held:
                return VipCheck(VipState.DEGRADED, f"on this NIC but not on this node: {local}")
            return VipCheck(VipState.HELD)
        holder = next((n.name for n in nics if holds(n, address)), "no NIC")
        return VipCheck(VipState.NOT_HELD, f"{address} is on {holder}")

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        nics, mine = await self._nics()
        return [
            f"identity: {identity.vm_name} ({identity.private_ip}) in {self.resource_group}",
            f"Microsoft.Network/networkInterfaces/read: allowed ({len(nics)} NICs; this VM's is {mine.name})",
            "Microsoft.Network/networkInterfaces/write: no dry run in ARM; checked at the first acquire",
        ]


class AzureLbProvider(LoadBalancerProvider):
    """Azure Load Balancer mode: an HTTP probe on TCP 9010 /var/modules/AM/ready.txt, or a TCP
    probe on `probe_port`, answered only while this node serves."""

    name = "azure_lb"
    cloud = "azure"
