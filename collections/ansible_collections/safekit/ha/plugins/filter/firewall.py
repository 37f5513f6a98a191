# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""Filters of the roles' firewall tasks (safekit_manage_firewall): the ports a node or witness
receives on, and the nftables file and firewalld rich rules that let them in (module_utils/firewall.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.safekit.ha.plugins.module_utils import firewall


def _wrap(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except firewall.FirewallError as e:
            raise AnsibleFilterError(f"safekit firewall: {e}") from e

    call.__doc__ = function.__doc__
    return call


def _unset(value: Any) -> Any:
    """A template's none (rendered "None" or "" without Jinja's native types): not given."""
    return None if value is None or str(value).strip() in ("", "None") else value


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "yes", "1", "on")


def node_ports(
    nodes: list[Any],
    *,
    kind: str,
    heart_port: Any = None,
    replication: Any = False,
    health_port: Any = firewall.DEFAULT_HEALTH_PORT,
    api_port: Any = firewall.DEFAULT_API_PORT,
    client_sources: Any = (),
) -> list[dict[str, Any]]:
    return firewall.node_ports(
        kind=kind,
        nodes=nodes,
        heart_port=_unset(heart_port),
        replication=_flag(replication),
        health_port=_unset(health_port),
        api_port=_unset(api_port),
        client_sources=client_sources or (),
    )


def arbiter_ports(nodes: list[Any], port: Any = None) -> list[dict[str, Any]]:
    return firewall.arbiter_ports(nodes=nodes, port=_unset(port) or firewall.DEFAULT_ARBITER_PORT)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "firewall_node_ports": _wrap(node_ports),
            "firewall_arbiter_ports": _wrap(arbiter_ports),
            "firewall_nft_ruleset": _wrap(firewall.nft_ruleset),
            "firewall_rich_rules": _wrap(firewall.firewalld_rich_rules),
            "firewall_rich_rule_changes": _wrap(firewall.firewalld_changes),
            "firewall_cmd_argvs": _wrap(firewall.firewalld_commands),
        }
