"""AWS VIP providers (boto3, extra `safekit[aws]`): `aws_route` (a /32 route in one or more route
tables points at this instance's ENI), `aws_eni_ip` (a secondary private IP assigned to this ENI,
with reassignment), `aws_eip` (an Elastic IP associated with this ENI), and `aws_lb` (load-balancer
mode: the health endpoint answers the NLB/ALB probe; optionally this instance is registered in a
target group while it serves).

Every operation reads the current state first and changes only what differs (the decision is a
pure function of what was read: `route_plan`, `route_state`, `eni_ip_state`, `eip_state`,
`registered`); every call is retried on throttling and 5xx within the operation's deadline.
Credentials: boto3's default chain (the instance role on EC2). Identity: IMDSv2, or options.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )
except ImportError as exc:  # the message load_provider shows
    raise ImportError(f"{exc}: the AWS providers need pip install 'safekit[aws]'") from exc

from safekit.vip.cloud.base import CloudVipProvider, Option, fixed, split_list
from safekit.vip.cloud.metadata import AwsIdentity, AwsImds, aws_identity, metadata_url
from safekit.vip.cloud.retry import Verdict
from safekit.vip.provider import VipCheck, VipSpec, VipState

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "EC2ThrottledException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
    }
)
IDENTITY_OPTIONS: dict[str, Option] = {
    "region": Option("AWS region (default: from the metadata service)"),
    "instance_id": Option("this instance's id (default: from the metadata service)"),
    "eni_id": Option("this instance's ENI that serves the VIP (default: the primary ENI)"),
    "private_ip": Option("this instance's private IP (default: from the metadata service)"),
}


# ----------------------------------------------------------------------------- pure parts
class RouteAction(enum.Enum):
    REPLACE = "replace"
    CREATE = "create"


def _route_for(routes: Sequence[Mapping[str, Any]], cidr: str) -> Mapping[str, Any] | None:
    return next((r for r in routes if r.get("DestinationCidrBlock") == cidr), None)


def route_plan(
    tables: Mapping[str, Sequence[Mapping[str, Any]]], cidr: str, eni_id: str
) -> list[tuple[str, RouteAction]]:
    """What to change so that `cidr` points at `eni_id` in every table (route lists as EC2 gives them)."""
    plan: list[tuple[str, RouteAction]] = []
    for table_id, routes in tables.items():
        route = _route_for(routes, cidr)
        if route is None:
            plan.append((table_id, RouteAction.CREATE))
        elif route.get("NetworkInterfaceId") != eni_id or route.get("State") == "blackhole":
            plan.append((table_id, RouteAction.REPLACE))
    return plan


def route_state(tables: Mapping[str, Sequence[Mapping[str, Any]]], cidr: str, eni_id: str) -> VipCheck:
    ours = [t for t, routes in tables.items() if not route_plan({t: routes}, cidr, eni_id)]
    others = [t for t in tables if t not in ours]
    if not others:
        return VipCheck(VipState.HELD)
    if not ours:
        where = {t: (_route_for(tables[t], cidr) or {}).get("NetworkInterfaceId", "no route") for t in others}
        return VipCheck(VipState.NOT_HELD, f"route {cidr} points elsewhere: {where}")
    return VipCheck(
        VipState.DEGRADED, f"route {cidr} points here in {', '.join(ours)} but not in {', '.join(others)}"
    )


def eni_ip_state(eni: Mapping[str, Any], address: str) -> VipCheck:
    for item in eni.get("PrivateIpAddresses", []):
        if item.get("PrivateIpAddress") == address:
            if item.get("Primary"):
                return VipCheck(
                    VipState.DEGRADED, f"{address} is the primary IP of {eni.get('NetworkInterfaceId')}"
                )
            return VipCheck(VipState.HELD)
    return VipCheck(VipState.NOT_HELD, f"{address} is not assigned to {eni.get('NetworkInterfaceId')}")


def eip_state(address: Mapping[str, Any], eni_id: str) -> VipCheck:
    holder = address.get("NetworkInterfaceId")
    if holder == eni_id:
        return VipCheck(VipState.HELD)
    return VipCheck(VipState.NOT_HELD, f"Elastic IP associated with {holder or 'nothing'}")


def registered(descriptions: Sequence[Mapping[str, Any]], instance_id: str) -> bool:
    """Is the instance registered (draining or unused count as not: it must be registered again)."""
    return any(
        d.get("Target", {}).get("Id") == instance_id
        and d.get("TargetHealth", {}).get("State") not in ("draining", "unused")
        for d in descriptions
    )


def classify(exc: BaseException) -> Verdict:
    """Throttling, 5xx, timeouts and dropped connections are retried; anything else fails at once."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return Verdict.RETRY if code in THROTTLING_CODES or status == 429 or status >= 500 else Verdict.FAIL
    if isinstance(
        exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionClosedError
    ):
        return Verdict.RETRY
    return Verdict.FAIL


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


# ----------------------------------------------------------------------------- providers
class _AwsProvider(CloudVipProvider):
    cloud = "aws"

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.imds = AwsImds(metadata_url("aws", self.options.get("metadata_url")))
        self._identity: AwsIdentity | None = None
        self._clients: dict[str, Any] = {}

    def _classify(self, exc: BaseException) -> Verdict:
        return classify(exc)

    async def identity(self) -> AwsIdentity:
        if self._identity is None:
            self._identity = await asyncio.to_thread(aws_identity, self.imds, self.options)
        return self._identity

    def client(self, service: str) -> Any:
        """One boto3 client per service, without botocore's own retries (ours are bounded)."""
        if service not in self._clients:
            assert self._identity is not None
            config = Config(
                region_name=self._identity.region,
                connect_timeout=min(2.0, self.attempt_timeout),
                read_timeout=self.attempt_timeout,
                retries={"total_max_attempts": 1},
                user_agent_extra="safekit-vip",
            )
            self._clients[service] = boto3.session.Session().client(
                service, endpoint_url=self.options.get("endpoint") or None, config=config
            )
        return self._clients[service]

    async def dry_run(self, action: str, call: Any, **kwargs: Any) -> str:
        """One mutating call with DryRun=True: allowed when EC2 answers DryRunOperation."""
        try:
            await self.api(action, lambda _t: call(DryRun=True, **kwargs))
        except Exception as exc:
            code = error_code(exc)
            if code == "DryRunOperation":
                return f"{action}: allowed (dry run)"
            if code == "UnauthorizedOperation":
                raise self.fail(
                    f"{action} is not allowed for this instance's role: see docs/cloud-permissions.md"
                ) from exc
            raise
        # EC2 always answers a dry run with an error; a success means the endpoint ignored DryRun
        # (a stand-in such as moto) and really made the call.
        raise self.fail(f"{action}: the endpoint ignored DryRun and made the call: is it really EC2?")


class AwsRouteProvider(_AwsProvider):
    """The VIP (outside the VPC's CIDR) is routed as a /32 to this instance's ENI in each route table.
    The ENI needs source/destination check disabled; the VIP is added to the node's interface."""

    name = "aws_route"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "route_tables": Option("route table ids, comma-separated (rtb-...)", required=True),
        **IDENTITY_OPTIONS,
    }

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.route_tables = split_list(self.options["route_tables"])
        self.cidr = f"{spec.address}/32"

    async def _tables(self) -> dict[str, list[Mapping[str, Any]]]:
        await self.identity()
        ec2 = self.client("ec2")
        answer = await self.api(
            "ec2:DescribeRouteTables",
            lambda _t: ec2.describe_route_tables(RouteTableIds=list(self.route_tables)),
        )
        return {t["RouteTableId"]: t.get("Routes", []) for t in answer["RouteTables"]}

    async def _acquire(self) -> bool:
        identity = await self.identity()
        await self.add_os_address()
        tables = await self._tables()
        ec2 = self.client("ec2")
        for table_id, action in route_plan(tables, self.cidr, identity.eni_id):
            args = {
                "RouteTableId": table_id,
                "DestinationCidrBlock": self.cidr,
                "NetworkInterfaceId": identity.eni_id,
            }
            if action is RouteAction.CREATE:
                try:
                    await self.api("ec2:CreateRoute", fixed(ec2.create_route, **args))
                    continue
                except Exception as exc:
                    if error_code(exc) != "RouteAlreadyExists":  # created meanwhile: replace it
                        raise
            await self.api("ec2:ReplaceRoute", fixed(ec2.replace_route, **args))
        return bool(route_plan(tables, self.cidr, identity.eni_id))

    async def _release(self) -> bool:
        # The route stays: the next primary replaces it in one call, and removing it first would
        # only open a window where the VIP is routed nowhere. Without the address the node no
        # longer answers for the VIP.
        return await self.remove_os_address()

    async def _check(self) -> VipCheck:
        identity = await self.identity()
        verdict = route_state(await self._tables(), self.cidr, identity.eni_id)
        local = await self.os_address_check()
        if verdict.held and local is not None and not local.held:
            return VipCheck(VipState.DEGRADED, f"routed here but not on this node: {local}")
        return verdict

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        tables = await self._tables()
        missing = set(self.route_tables) - set(tables)
        if missing:
            raise self.fail(f"route table(s) {', '.join(sorted(missing))} not found")
        lines = [
            f"identity: {identity.instance_id} eni {identity.eni_id} in {identity.region}",
            f"ec2:DescribeRouteTables: {len(tables)} table(s) readable",
        ]
        ec2 = self.client("ec2")
        for table_id in self.route_tables:
            # the call acquire would make: create where the route is missing, else replace
            exists = _route_for(tables[table_id], self.cidr) is not None
            action, call = (
                ("ec2:ReplaceRoute", ec2.replace_route) if exists else ("ec2:CreateRoute", ec2.create_route)
            )
            line = await self.dry_run(
                action,
                call,
                RouteTableId=table_id,
                DestinationCidrBlock=self.cidr,
                NetworkInterfaceId=identity.eni_id,
            )
            lines.append(f"{table_id}: {line}")
        return lines


class AwsEniIpProvider(_AwsProvider):
    """The VIP is a secondary private IP, assigned to this ENI with reassignment (AWS moves it from
    the ENI that had it in the same call) and added to the node's interface."""

    name = "aws_eni_ip"
    OPTIONS: ClassVar[dict[str, Option]] = dict(IDENTITY_OPTIONS)

    async def _eni(self) -> Mapping[str, Any]:
        identity = await self.identity()
        ec2 = self.client("ec2")
        answer = await self.api(
            "ec2:DescribeNetworkInterfaces",
            lambda _t: ec2.describe_network_interfaces(NetworkInterfaceIds=[identity.eni_id]),
        )
        enis: list[Mapping[str, Any]] = answer["NetworkInterfaces"]
        if not enis:
            raise self.fail(f"ENI {identity.eni_id} not found")
        return enis[0]

    async def _acquire(self) -> bool:
        identity = await self.identity()
        state = eni_ip_state(await self._eni(), str(self.spec.address))
        if state.state is VipState.DEGRADED:
            raise self.fail(state.reason)
        changed = False
        if not state.held:
            ec2 = self.client("ec2")
            await self.api(
                "ec2:AssignPrivateIpAddresses",
                lambda _t: ec2.assign_private_ip_addresses(
                    NetworkInterfaceId=identity.eni_id,
                    PrivateIpAddresses=[str(self.spec.address)],
                    AllowReassignment=True,
                ),
            )
            changed = True
        return await self.add_os_address() or changed

    async def _release(self) -> bool:
        identity = await self.identity()
        changed = await self.remove_os_address()
        if eni_ip_state(await self._eni(), str(self.spec.address)).held:
            ec2 = self.client("ec2")
            try:
                await self.api(
                    "ec2:UnassignPrivateIpAddresses",
                    lambda _t: ec2.unassign_private_ip_addresses(
                        NetworkInterfaceId=identity.eni_id, PrivateIpAddresses=[str(self.spec.address)]
                    ),
                )
            except Exception as exc:
                # moved to the other node meanwhile: not ours any more, which is what release wants
                if error_code(exc) not in ("InvalidParameterValue", "InvalidIPAddress.NotFound"):
                    raise
            changed = True
        return changed

    async def _check(self) -> VipCheck:
        verdict = eni_ip_state(await self._eni(), str(self.spec.address))
        local = await self.os_address_check()
        if verdict.held and local is not None and not local.held:
            return VipCheck(VipState.DEGRADED, f"assigned to this ENI but not on this node: {local}")
        return verdict

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        await self._eni()
        return [
            f"identity: {identity.instance_id} eni {identity.eni_id} in {identity.region}",
            "ec2:DescribeNetworkInterfaces: allowed",
            # AssignPrivateIpAddresses has no DryRun parameter
            "ec2:AssignPrivateIpAddresses: no dry run in the API; checked at the first acquire",
        ]


class AwsEipProvider(_AwsProvider):
    """The VIP is an Elastic IP (its public address), associated with this ENI (reassociation
    allowed); nothing is added on the node (AWS translates it to the private IP)."""

    name = "aws_eip"
    os_address_default = "off"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "allocation_id": Option("the Elastic IP's allocation id (eipalloc-...)", required=True),
        **IDENTITY_OPTIONS,
    }

    async def _address(self) -> Mapping[str, Any]:
        await self.identity()
        ec2 = self.client("ec2")
        answer = await self.api(
            "ec2:DescribeAddresses",
            lambda _t: ec2.describe_addresses(AllocationIds=[self.options["allocation_id"]]),
        )
        addresses: list[Mapping[str, Any]] = answer["Addresses"]
        if not addresses:
            raise self.fail(f"Elastic IP {self.options['allocation_id']} not found")
        if addresses[0].get("PublicIp") != str(self.spec.address):
            raise self.fail(
                f"allocation {self.options['allocation_id']} is {addresses[0].get('PublicIp')}, "
                f"not {self.spec.address}: fix virtual_addr or allocation_id"
            )
        return addresses[0]

    async def _acquire(self) -> bool:
        identity = await self.identity()
        if eip_state(await self._address(), identity.eni_id).held:
            return await self.add_os_address()
        ec2 = self.client("ec2")
        await self.api(
            "ec2:AssociateAddress",
            lambda _t: ec2.associate_address(
                AllocationId=self.options["allocation_id"],
                NetworkInterfaceId=identity.eni_id,
                PrivateIpAddress=identity.private_ip,
                AllowReassociation=True,
            ),
        )
        await self.add_os_address()
        return True

    async def _release(self) -> bool:
        identity = await self.identity()
        changed = await self.remove_os_address()
        address = await self._address()
        if eip_state(address, identity.eni_id).held:
            ec2 = self.client("ec2")
            try:
                await self.api(
                    "ec2:DisassociateAddress",
                    lambda _t: ec2.disassociate_address(AssociationId=address["AssociationId"]),
                )
            except Exception as exc:
                if error_code(exc) != "InvalidAssociationID.NotFound":  # reassociated meanwhile
                    raise
            changed = True
        return changed

    async def _check(self) -> VipCheck:
        identity = await self.identity()
        return eip_state(await self._address(), identity.eni_id)

    async def _validate(self) -> list[str]:
        identity = await self.identity()
        await self._address()
        ec2 = self.client("ec2")
        return [
            f"identity: {identity.instance_id} eni {identity.eni_id} in {identity.region}",
            "ec2:DescribeAddresses: allowed",
            await self.dry_run(
                "ec2:AssociateAddress",
                ec2.associate_address,
                AllocationId=self.options["allocation_id"],
                NetworkInterfaceId=identity.eni_id,
                AllowReassociation=True,
            ),
        ]


class AwsLbProvider(_AwsProvider):
    """Load-balancer mode: the NLB/ALB health check on port 9010 (`/var/modules/AM/ready.txt`) sees
    only the serving node(s) as healthy, which this provider's acquire makes possible (the module
    becomes ready); with `target_group_arn` the instance is also registered while it serves."""

    name = "aws_lb"
    os_address_default = "off"
    OPTIONS: ClassVar[dict[str, Option]] = {
        "target_group_arn": Option("register this instance in this target group while it serves"),
        "port": Option("the target's port (default: the target group's)"),
        **IDENTITY_OPTIONS,
    }

    def __init__(self, spec: VipSpec) -> None:
        super().__init__(spec)
        self.held = False
        self.target_group = self.options.get("target_group_arn") or None

    def _target(self, identity: AwsIdentity) -> dict[str, Any]:
        target: dict[str, Any] = {"Id": identity.instance_id}
        if self.options.get("port"):
            target["Port"] = int(self.options["port"])
        return target

    async def _registered(self) -> bool:
        identity = await self.identity()
        elb = self.client("elbv2")
        answer = await self.api(
            "elasticloadbalancing:DescribeTargetHealth",
            lambda _t: elb.describe_target_health(TargetGroupArn=self.target_group),
        )
        return registered(answer["TargetHealthDescriptions"], identity.instance_id)

    async def _acquire(self) -> bool:
        changed = not self.held
        if self.target_group is not None and not await self._registered():
            identity = await self.identity()
            elb = self.client("elbv2")
            await self.api(
                "elasticloadbalancing:RegisterTargets",
                lambda _t: elb.register_targets(
                    TargetGroupArn=self.target_group, Targets=[self._target(identity)]
                ),
            )
            changed = True
        self.held = True
        return await self.add_os_address() or changed

    async def _release(self) -> bool:
        changed = self.held
        self.held = False
        changed = await self.remove_os_address() or changed
        if self.target_group is not None and await self._registered():
            identity = await self.identity()
            elb = self.client("elbv2")
            await self.api(
                "elasticloadbalancing:DeregisterTargets",
                lambda _t: elb.deregister_targets(
                    TargetGroupArn=self.target_group, Targets=[self._target(identity)]
                ),
            )
            changed = True
        return changed

    async def _check(self) -> VipCheck:
        if self.target_group is not None:
            is_registered = await self._registered()
            if self.held and not is_registered:
                return VipCheck(VipState.DEGRADED, f"serving but not registered in {self.target_group}")
            if not self.held and is_registered:
                return VipCheck(
                    VipState.NOT_HELD, f"not serving, yet still registered in {self.target_group}"
                )
        return VipCheck(VipState.HELD) if self.held else VipCheck(VipState.NOT_HELD, "not serving")

    async def _validate(self) -> list[str]:
        if self.target_group is None:
            return ["load-balancer mode through the health endpoint (port 9010): no cloud call"]
        identity = await self.identity()
        await self._registered()
        return [
            f"identity: {identity.instance_id} in {identity.region}",
            f"elasticloadbalancing:DescribeTargetHealth: {self.target_group} readable",
            "elasticloadbalancing:RegisterTargets: no dry run in the API; checked at the first acquire",
        ]
