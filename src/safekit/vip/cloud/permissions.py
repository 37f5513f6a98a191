"""The one list of cloud API actions each cloud VIP provider uses, and the permission each needs.

This is the source of truth for three things: the providers themselves (a provider may only make
a call declared here - `require` fails otherwise, so the list cannot drift from the code), the
minimal IAM policy / Azure custom role / GCP custom role printed in docs/cloud-permissions.md
(`policy_document`), and the Terraform invariant tests ("the identity grants only what the
provider calls").

`action` is the permission string as the cloud's IAM names it: `ec2:ReplaceRoute`,
`Microsoft.Network/routeTables/routes/write`, `compute.routes.create`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Cloud = Literal["aws", "azure", "gcp"]
Operation = Literal["acquire", "release", "check", "validate"]
ALL: tuple[Operation, ...] = ("acquire", "release", "check", "validate")


@dataclass(frozen=True)
class Permission:
    action: str
    operations: tuple[Operation, ...]
    mutating: bool
    why: str
    optional: bool = False
    """Needed only with an option (e.g. target registration in lb mode)."""


@dataclass(frozen=True)
class ProviderPermissions:
    provider: str
    cloud: Cloud
    permissions: tuple[Permission, ...]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(p.action for p in self.permissions)


def _p(
    action: str, ops: tuple[Operation, ...], mutating: bool, why: str, optional: bool = False
) -> Permission:
    return Permission(action, ops, mutating, why, optional)


_READ: tuple[Operation, ...] = ALL
_WRITE_ACQUIRE: tuple[Operation, ...] = ("acquire", "validate")
_WRITE_RELEASE: tuple[Operation, ...] = ("release", "validate")

PROVIDERS: dict[str, ProviderPermissions] = {
    p.provider: p
    for p in (
        ProviderPermissions(
            "aws_route",
            "aws",
            (
                _p("ec2:DescribeRouteTables", _READ, False, "read the /32 route of each route table"),
                _p("ec2:ReplaceRoute", _WRITE_ACQUIRE, True, "point the route at this instance's ENI"),
                _p("ec2:CreateRoute", _WRITE_ACQUIRE, True, "create the route where it does not exist yet"),
            ),
        ),
        ProviderPermissions(
            "aws_eni_ip",
            "aws",
            (
                _p("ec2:DescribeNetworkInterfaces", _READ, False, "which ENI holds the secondary IP"),
                _p(
                    "ec2:AssignPrivateIpAddresses",
                    _WRITE_ACQUIRE,
                    True,
                    "assign the IP to this ENI (with reassignment)",
                ),
                _p("ec2:UnassignPrivateIpAddresses", ("release",), True, "unassign it on release"),
            ),
        ),
        ProviderPermissions(
            "aws_eip",
            "aws",
            (
                _p("ec2:DescribeAddresses", _READ, False, "where the Elastic IP is associated"),
                _p(
                    "ec2:AssociateAddress", _WRITE_ACQUIRE, True, "associate it with this ENI (reassociation)"
                ),
                _p("ec2:DisassociateAddress", ("release",), True, "disassociate it on release"),
            ),
        ),
        ProviderPermissions(
            "aws_lb",
            "aws",
            (
                _p(
                    "elasticloadbalancing:DescribeTargetHealth",
                    _READ,
                    False,
                    "is this instance registered",
                    optional=True,
                ),
                _p(
                    "elasticloadbalancing:RegisterTargets",
                    ("acquire",),
                    True,
                    "register this instance (option target_group_arn)",
                    optional=True,
                ),
                _p(
                    "elasticloadbalancing:DeregisterTargets",
                    ("release",),
                    True,
                    "deregister it on release (option target_group_arn)",
                    optional=True,
                ),
            ),
        ),
        ProviderPermissions(
            "azure_route",
            "azure",
            (
                _p("Microsoft.Network/routeTables/routes/read", _READ, False, "read the /32 route"),
                _p(
                    "Microsoft.Network/routeTables/routes/write",
                    ("acquire",),
                    True,
                    "next hop = this VM's IP",
                ),
                _p(
                    "Microsoft.Network/locations/operations/read",
                    ("acquire",),
                    False,
                    "follow the long-running operation of the write",
                ),
            ),
        ),
        ProviderPermissions(
            "azure_nic_ip",
            "azure",
            (
                _p("Microsoft.Network/networkInterfaces/read", _READ, False, "which NIC holds the IP"),
                _p(
                    "Microsoft.Network/networkInterfaces/write",
                    ("acquire", "release"),
                    True,
                    "move the IP configuration",
                ),
                _p(
                    "Microsoft.Network/virtualNetworks/subnets/join/action",
                    ("acquire",),
                    True,
                    "an IP configuration joins the NIC's subnet",
                ),
                _p(
                    "Microsoft.Network/locations/operations/read",
                    ("acquire", "release"),
                    False,
                    "follow the long-running operation of the write",
                ),
            ),
        ),
        ProviderPermissions("azure_lb", "azure", ()),
        ProviderPermissions(
            "gcp_route",
            "gcp",
            (
                _p("compute.routes.get", _READ, False, "read the route"),
                _p("compute.routes.delete", ("acquire",), True, "delete the route that points elsewhere"),
                _p("compute.routes.create", _WRITE_ACQUIRE, True, "insert it with this instance as next hop"),
                _p(
                    "compute.networks.updatePolicy",
                    ("acquire",),
                    True,
                    "creating or deleting a route changes the network's policy",
                ),
                _p("compute.instances.use", ("acquire",), False, "an instance as next hop"),
                _p("compute.globalOperations.get", ("acquire",), False, "wait for the route operations"),
            ),
        ),
        ProviderPermissions(
            "gcp_alias_ip",
            "gcp",
            (
                _p("compute.instances.list", _READ, False, "which instance holds the alias range"),
                _p("compute.instances.get", _READ, False, "this instance's network interface"),
                _p(
                    "compute.instances.updateNetworkInterface",
                    ("acquire", "release"),
                    True,
                    "remove the range from the other instance, add it to this one",
                ),
                _p(
                    "compute.zoneOperations.get",
                    ("acquire", "release"),
                    False,
                    "wait for the zone operations",
                ),
            ),
        ),
        ProviderPermissions("gcp_ilb", "gcp", ()),
    )
}


def require(provider: str, action: str) -> Permission:
    """The declared permission of `action` for `provider`; a call that is not declared is a bug."""
    for permission in PROVIDERS[provider].permissions:
        if permission.action == action:
            return permission
    raise AssertionError(f"{provider} calls {action}, which is not declared in safekit.vip.cloud.permissions")


def actions(cloud: Cloud, providers: tuple[str, ...] | None = None, *, optional: bool = True) -> list[str]:
    """Sorted, de-duplicated actions of the providers of `cloud` (all of them by default)."""
    chosen = [
        p for p in PROVIDERS.values() if p.cloud == cloud and (providers is None or p.provider in providers)
    ]
    return sorted({perm.action for p in chosen for perm in p.permissions if optional or not perm.optional})


def policy_document(cloud: Cloud, providers: tuple[str, ...] | None = None) -> str:
    """The minimal policy as the cloud takes it: an AWS IAM policy (JSON), an Azure custom role
    definition (JSON, scope left for the user), a GCP custom role (YAML for `gcloud iam roles create
    --file`)."""
    names = actions(cloud, providers)
    if cloud == "aws":
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Sid": "SafekitVip", "Effect": "Allow", "Action": names, "Resource": "*"}],
            },
            indent=2,
        )
    if cloud == "azure":
        return json.dumps(
            {
                "Name": "safekit VIP operator",
                "IsCustom": True,
                "Description": "What the safekit cloud VIP providers call.",
                "Actions": names,
                "NotActions": [],
                "AssignableScopes": ["/subscriptions/SUBSCRIPTION_ID/resourceGroups/RESOURCE_GROUP"],
            },
            indent=2,
        )
    lines = [
        "title: safekit VIP operator",
        "description: What the safekit cloud VIP providers call.",
        "stage: GA",
        "includedPermissions:",
    ]
    lines += [f"- {name}" for name in names]
    return "\n".join(lines)
