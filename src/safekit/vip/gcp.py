"""GCP VIP providers (google-cloud-compute, extra `safekit[gcp]`): `gcp_route` (a /32 route whose
next hop is this instance; routes cannot be changed, so it is deleted then inserted), `gcp_alias_ip`
(an alias IP range removed from the instance that has it, then added to this one, each waiting for
its zone operation), and `gcp_ilb` (internal load balancer: its health check probes the health
endpoint; no API call).

Credentials: the instance's service account, through an access token from the metadata server
(cached until it expires). Identity: the metadata server, or options. Every call is retried on
429/5xx within the operation's deadline; the decisions (`route_is_ours`, `alias_plan`) are pure.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

try:
    import google.auth.credentials
    from google.api_core import exceptions as gexc
    from google.api_core.client_options import ClientOptions
    from google.cloud import compute_v1
    from requests import exceptions as rexc
except ImportError as exc:  # the message load_provider shows
    raise ImportError(f"{exc}: the GCP providers need pip install 'safekit[gcp]'") from exc

from safekit.vip.cloud.base import CloudVipProvider, Option
from safekit.vip.cloud.lb import LoadBalancerProvider
from safekit.vip.cloud.metadata import GcpIdentity, GcpMetadata, gcp_identity, metadata_url
from safekit.vip.cloud.retry import Verdict, current_deadline
from safekit.vip.provider import VipCheck, VipError, VipSpec, VipState

IDENTITY_OPTIONS: dict[str, Option] = {
    "project": Option("project id (default: from the metadata server)"),
    "zone": Option("this instance's zone (default: from the metadata server)"),
    "instance": Option("this instance's name (default: from the metadata server)"),
    "private_ip": Option("this instance's IP (default: from the metadata server)"),
}
OPERATION_POLL = (0.05, 1.0)
"""First and longest pause (s) between two reads of a running operation."""


# ----------------------------------------------------------------------------- pure parts
def instance_path(project: str, zone: str, instance: str) -> str:
    return f"projects/{project}/zones/{zone}/instances/{instance}"


def route_is_ours(route: Mapping[str, Any] | None, dest_range: str, me: str) -> bool:
    """`route` as the API gives it (or None): does it send `dest_range` to instance path `me`?"""
    if route is None:
        return False
    return route.get("dest_range") == dest_range and str(route.get("next_hop_instance", "")).endswith(me)


def normalise_range(text: str) -> str:
    """GCP accepts `10.0.0.5` or `10.0.0.5/32` for an alias range; compare them as networks."""
    return str(ipaddress.IPv4Network(text if "/" in text else f"{text}/32", strict=False))


@dataclass(frozen=True)
class NicState:
    """One instance's network interface as read: where it is, its alias ranges, its fingerprint."""

    zone: str
    instance: str
    nic: str
    ranges: tuple[tuple[str, str], ...]
    """(ip_cidr_range, subnetwork_range_name) pairs."""
    fingerprint: str


def alias_plan(nics: Sequence[NicState], alias: str, zone: str, instance: str) -> tuple[list[NicState], bool]:
    """(interfaces of other instances to remove `alias` from, whether to add it to ours)."""
    holders = [n for n in nics if any(normalise_range(r) == alias for r, _ in n.ranges)]
    others = [n for n in holders if (n.zone, n.instance) != (zone, instance)]
    ours = any((n.zone, n.instance) == (zone, instance) for n in holders)
    return others, not ours


def classify(exc: BaseException) -> Verdict:
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code or 0
        return Verdict.RETRY if code == 429 or code >= 500 else Verdict.FAIL
    if isinstance(exc, rexc.ConnectionError | rexc.Timeout):
        return Verdict.RETRY
    return Verdict.FAIL


# ----------------------------------------------------------------------------- providers
def _metadata_credentials(server: GcpMetadata) -> Any:
    class MetadataCredentials(google.auth.credentials.Credentials):
        """The service account's token from the metadata server, cached by `GcpMetadata`."""

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]

        def refresh(self, request: Any) -> None:
            token, expiry = server.access_token()
            self.token = token
            # google-auth compares with a naive UTC datetime
            self.expiry = datetime.datetime.fromtimestamp(expiry, tz=datetime.UTC).replace(tzinfo=None)

    return MetadataCredentials()


class _GcpProvider(CloudVipProvider):
    cloud = "gcp"

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.metadata = GcpMetadata(metadata_url("gcp", self.options.get("metadata_url")))
        self._identity: GcpIdentity | None = None
        self._clients: dict[str, Any] = {}

    def _classify(self, exc: BaseException) -> Verdict:
        return classify(exc)

    async def identity(self) -> GcpIdentity:
        if self._identity is None:
            self._identity = await asyncio.to_thread(gcp_identity, self.metadata, self.options)
        return self._identity

    def client(self, kind: str) -> Any:
        if kind not in self._clients:
            options = (
                ClientOptions(api_endpoint=self.options["endpoint"]) if self.options.get("endpoint") else None
            )
            factory = getattr(compute_v1, kind)
            self._clients[kind] = factory(
                credentials=_metadata_credentials(self.metadata), client_options=options, transport="rest"
            )
        return self._clients[kind]

    async def _read_operation(self, project: str, name: str, zone: str | None) -> Any:
        if zone is None:
            work = _global_op(self.client("GlobalOperationsClient"), project, name)
            return await self.api("compute.globalOperations.get", work)
        work = _zone_op(self.client("ZoneOperationsClient"), project, zone, name)
        return await self.api("compute.zoneOperations.get", work)

    async def wait(self, operation: Any, zone: str | None) -> None:
        """Polls the operation until DONE (bounded by the deadline); its error becomes a VipError."""
        identity = await self.identity()
        name, status = operation.name, operation.status
        pause = OPERATION_POLL[0]
        done = "DONE"
        while str(getattr(status, "name", status)) != done:
            if current_deadline().remaining() < pause:
                raise self.fail(f"operation {name} still running when the time bound ran out")
            await asyncio.sleep(pause)
            pause = min(OPERATION_POLL[1], pause * 2)
            got = await self._read_operation(identity.project, name, zone)
            status, operation = got.status, got
        error = getattr(operation, "error", None)
        errors = list(getattr(error, "errors", []) or [])
        if errors:
            detail = "; ".join(f"{e.code}: {e.message}" for e in errors)
            raise self.fail(f"operation {name} failed: {detail}")


def _global_op(client: Any, project: str, name: str) -> Callable[[float], Any]:
    return lambda t: client.get(project=project, operation=name, timeout=t, retry=None)


def _zone_op(client: Any, project: str, zone: str, name: str) -> Callable[[float], Any]:
    return lambda t: client.get(project=project, zone=zone, operation=name, timeout=t, retry=None)


def _as_dict(message: Any) -> dict[str, Any]:
    return {
        "dest_range": getattr(message, "dest_range", ""),
        "next_hop_instance": getattr(message, "next_hop_instance", ""),
        "network": getattr(message, "network", ""),
    }


class GcpRouteProvider(_GcpProvider):
    """A /32 route `route_name` in `network` with this instance as next hop (the instance needs
    IP forwarding, `canIpForward`); the VIP is added to the node's interface."""

    name = "gcp_route"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "route_name": Option("the route's name (lower case, e.g. safekit-vip-web)", required=True),
        "network": Option("the VPC network's name", default="default"),
        "priority": Option("the route's priority", default="1000"),
        **IDENTITY_OPTIONS,
    }

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.dest_range = f"{spec.address}/32"
        if not self.options["priority"].isdigit():
            raise VipError(f"{self.name}: option priority must be a number")

    async def _route(self) -> dict[str, Any] | None:
        identity = await self.identity()
        routes = self.client("RoutesClient")

        def get(timeout: float) -> Any:
            try:
                return routes.get(
                    project=identity.project, route=self.options["route_name"], timeout=timeout, retry=None
                )
            except gexc.NotFound:
                return None

        route = await self.api("compute.routes.get", get)
        return None if route is None else _as_dict(route)

    async def _acquire(self) -> bool:
        identity = await self.identity()
        me = instance_path(identity.project, identity.zone, identity.instance)
        await self.add_os_address()
        route = await self._route()
        if route_is_ours(route, self.dest_range, me):
            return False
        routes = self.client("RoutesClient")
        name = self.options["route_name"]
        if route is not None:
            # no update in the API: delete, then insert (the route is missing in between)

            def delete(timeout: float) -> Any:
                try:
                    return routes.delete(project=identity.project, route=name, timeout=timeout, retry=None)
                except gexc.NotFound:  # deleted meanwhile (the other node's release, a retry)
                    return None

            operation = await self.api("compute.routes.delete", delete)
            if operation is not None:
                await self.wait(operation, None)
        resource = compute_v1.Route(
            name=name,
            network=f"projects/{identity.project}/global/networks/{self.options['network']}",
            dest_range=self.dest_range,
            priority=int(self.options["priority"]),
            next_hop_instance=me,
            description="safekit VIP route: points at the node that serves",
        )
        operation = await self.api(
            "compute.routes.create",
            lambda t: routes.insert(project=identity.project, route_resource=resource, timeout=t, retry=None),
        )
        await self.wait(operation, None)
        return True

    async def _release(self) -> bool:
        # As for AWS: the route stays until the next primary replaces it.
        return await self.remove_os_address()

    async def _check(self) -> VipCheck:
        identity = await self.identity()
        route = await self._route()
        if route_is_ours(
            route, self.dest_range, instance_path(identity.project, identity.zone, identity.instance)
        ):
            local = await self.os_address_check()
            if local is not None and not local.held:
                return VipCheck(VipState.DEGRADED, f"routed here but not on this node: {local}")
            return VipCheck(VipState.HELD)
        where = "no route" if route is None else f"next hop {route['next_hop_instance']}"
        return VipCheck(VipState.NOT_HELD, f"route {self.options['route_name']}: {where}")

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        route = await self._route()
        return [
            f"identity: {identity.instance} in {identity.zone} ({identity.project})",
            f"compute.routes.get: allowed ({'exists' if route else 'no route yet'})",
            "compute.routes.delete/insert: no dry run in the API; checked at the first acquire",
        ]


class GcpAliasIpProvider(_GcpProvider):
    """An alias IP range (default the VIP/32) on this instance's interface `nic`: removed from the
    instance that has it, then added here, each change a zone operation that is waited for."""

    name = "gcp_alias_ip"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "alias_range": Option("the alias range (default: the VIP/32)"),
        "subnetwork_range_name": Option(
            "the subnet's secondary range the alias comes from (default: primary)"
        ),
        "nic": Option("the instance's network interface", default="nic0"),
        **IDENTITY_OPTIONS,
    }

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        try:
            self.alias = normalise_range(self.options.get("alias_range") or f"{spec.address}/32")
        except ValueError:
            raise VipError(
                f"{self.name}: option alias_range={self.options['alias_range']!r}: give a CIDR"
            ) from None

    def _nic_state(self, zone: str, instance: Any) -> NicState | None:
        for nic in instance.network_interfaces:
            if nic.name == self.options["nic"]:
                ranges = tuple((r.ip_cidr_range, r.subnetwork_range_name) for r in nic.alias_ip_ranges)
                return NicState(zone, instance.name, nic.name, ranges, nic.fingerprint)
        return None

    async def _all_nics(self) -> list[NicState]:
        identity = await self.identity()
        instances = self.client("InstancesClient")

        def listing(timeout: float) -> list[NicState]:
            found: list[NicState] = []
            pager = instances.aggregated_list(project=identity.project, timeout=timeout, retry=None)
            for scope, scoped in pager:
                for instance in scoped.instances:
                    state = self._nic_state(scope.rsplit("/", 1)[-1], instance)
                    if state is not None:
                        found.append(state)
            return found

        return await self.api("compute.instances.list", listing)

    async def _own_nic(self) -> NicState:
        identity = await self.identity()
        instances = self.client("InstancesClient")
        instance = await self.api(
            "compute.instances.get",
            lambda t: instances.get(
                project=identity.project,
                zone=identity.zone,
                instance=identity.instance,
                timeout=t,
                retry=None,
            ),
        )
        state = self._nic_state(identity.zone, instance)
        if state is None:
            raise self.fail(f"instance {identity.instance} has no network interface {self.options['nic']}")
        return state

    async def _update(self, nic: NicState, ranges: list[tuple[str, str]]) -> None:
        identity = await self.identity()
        instances = self.client("InstancesClient")
        resource = compute_v1.NetworkInterface(
            alias_ip_ranges=[
                compute_v1.AliasIpRange(ip_cidr_range=r, **({"subnetwork_range_name": n} if n else {}))
                for r, n in ranges
            ],
            fingerprint=nic.fingerprint,
        )
        operation = await self.api(
            "compute.instances.updateNetworkInterface",
            lambda t: instances.update_network_interface(
                project=identity.project,
                zone=nic.zone,
                instance=nic.instance,
                network_interface=nic.nic,
                network_interface_resource=resource,
                timeout=t,
                retry=None,
            ),
        )
        await self.wait(operation, nic.zone)

    async def _acquire(self) -> bool:
        identity = await self.identity()
        own = await self._own_nic()
        others, add = alias_plan([own], self.alias, identity.zone, identity.instance)
        if add:
            others, add = alias_plan(await self._all_nics(), self.alias, identity.zone, identity.instance)
            # alias ranges may not overlap in a network: the other instance lets go first
            for nic in others:
                await self._update(nic, [r for r in nic.ranges if normalise_range(r[0]) != self.alias])
            own = await self._own_nic()  # a fresh fingerprint
            await self._update(
                own, [*own.ranges, (self.alias, self.options.get("subnetwork_range_name", ""))]
            )
        return await self.add_os_address() or add

    async def _release(self) -> bool:
        changed = await self.remove_os_address()
        own = await self._own_nic()
        kept = [r for r in own.ranges if normalise_range(r[0]) != self.alias]
        if len(kept) != len(own.ranges):
            await self._update(own, kept)
            changed = True
        return changed

    async def _check(self) -> VipCheck:
        own = await self._own_nic()
        if any(normalise_range(r) == self.alias for r, _ in own.ranges):
            local = await self.os_address_check()
            if local is not None and not local.held:
                return VipCheck(VipState.DEGRADED, f"alias range here but not on this node: {local}")
            return VipCheck(VipState.HELD)
        return VipCheck(VipState.NOT_HELD, f"{self.alias} is not an alias range of {own.instance}/{own.nic}")

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        await self._own_nic()
        nics = await self._all_nics()
        return [
            f"identity: {identity.instance} in {identity.zone} ({identity.project})",
            f"compute.instances.get/list: allowed ({len(nics)} interfaces named {self.options['nic']})",
            "compute.instances.updateNetworkInterface: no dry run in the API; checked at the first acquire",
        ]


class GcpIlbProvider(LoadBalancerProvider):
    """Internal load balancer mode: its health check targets TCP 9010 /var/modules/AM/ready.txt."""

    name = "gcp_ilb"
    cloud = "gcp"
