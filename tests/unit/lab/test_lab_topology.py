"""Names, addresses and the Ansible inventory of a lab: what users and later issues rely on."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from safekit.lab.topology import (
    LAB_RANGE,
    MAX_NAME_LEN,
    SLOTS,
    LabError,
    choose_slot,
    inventory,
    plan_lab,
    validate_name,
)


def test_first_lab_uses_the_documented_addresses() -> None:
    plan = plan_lab("lab", slot=0, nodes=2, witness=True, client=True)
    assert [(h.name, str(h.address)) for h in plan.hosts] == [
        ("node1", "198.18.0.1"),
        ("node2", "198.18.0.2"),
        ("witness", "198.18.0.254"),
        ("client", "198.18.0.100"),
    ]
    assert str(plan.controller_address) == "198.18.0.253/24"
    assert str(plan.vips[0]) == "198.18.0.200"


def test_every_lan_is_its_own_network_and_nodes_are_on_all_of_them() -> None:
    plan = plan_lab("lab", slot=3, nodes=3, lans=3, witness=True, client=True)
    assert [lan.name for lan in plan.lans] == ["default", "lan1", "lan2"]
    assert [str(lan.network) for lan in plan.lans] == ["198.18.12.0/24", "198.18.13.0/24", "198.18.14.0/24"]
    node3 = plan.host("node3")
    assert {lan: str(a) for lan, a in node3.addresses.items()} == {
        "default": "198.18.12.3/24",
        "lan1": "198.18.13.3/24",
        "lan2": "198.18.14.3/24",
    }
    # The witness and the client sit on the public LAN only.
    assert list(plan.host("witness").addresses) == ["default"]
    assert list(plan.host("client").addresses) == ["default"]


@pytest.mark.parametrize("slot", [0, 1, 63, 64, SLOTS - 1])
def test_every_address_of_every_slot_stays_inside_the_lab_range(slot: int) -> None:
    plan = plan_lab("lab", slot=slot, nodes=32, lans=4, witness=True, client=True)
    addresses = [a.ip for h in plan.hosts for a in h.addresses.values()]
    addresses += [plan.controller_address.ip, *plan.vips]
    assert all(ip in LAB_RANGE for ip in addresses)
    assert len(set(addresses)) == len(addresses)


def test_labs_in_different_slots_share_no_network() -> None:
    networks = [lan.network for s in range(SLOTS) for lan in plan_lab("x", slot=s, lans=4).lans]
    assert len(set(networks)) == len(networks)
    assert all(not a.overlaps(b) for a, b in itertools.pairwise(networks))


def test_interface_names_fit_the_kernel_limit() -> None:
    name = "a" * MAX_NAME_LEN
    plan = plan_lab(name, slot=0, nodes=32, lans=4, witness=True, client=True)
    names = [plan.controller_link] + [h.switch_port(lan) for h in plan.hosts for lan in plan.host_lans(h)]
    assert max(len(n) for n in names) <= 15


def test_macs_are_unicast_locally_administered_and_unique() -> None:
    plan = plan_lab("lab", slot=5, nodes=8, lans=2, witness=True, client=True)
    macs = [h.mac(lan) for h in plan.hosts for lan in plan.host_lans(h)]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b11 == 0b10 for m in macs)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * (MAX_NAME_LEN + 1), "too long"),
        ("Lab", "invalid"),
        ("1lab", "invalid"),
        ("la-b", "invalid"),
        ("", "invalid"),
    ],
)
def test_bad_lab_names_are_refused_with_a_reason(name: str, message: str) -> None:
    with pytest.raises(LabError, match=message):
        validate_name(name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": 0}, "--nodes must be between 1 and 32"),
        ({"nodes": 33}, "--nodes must be between 1 and 32"),
        ({"lans": 0}, "--lans must be between 1 and 4"),
        ({"lans": 5}, "--lans must be between 1 and 4"),
        ({"slot": SLOTS}, "slot"),
    ],
)
def test_bad_sizes_are_refused(kwargs: dict[str, int], message: str) -> None:
    params = {"slot": 0, **kwargs}
    with pytest.raises(LabError, match=message):
        plan_lab("lab", **params)


def test_unknown_host_and_lan_name_the_known_ones() -> None:
    plan = plan_lab("lab", slot=0, nodes=2)
    with pytest.raises(LabError, match=r"unknown host 'node3'.*node1, node2"):
        plan.host("node3")
    with pytest.raises(LabError, match=r"unknown LAN 'lan1'.*default"):
        plan.lan("lan1")


def test_slots_are_reused_lowest_first_and_exhaustion_is_reported() -> None:
    assert choose_slot([]) == 0
    assert choose_slot([0, 1, 3]) == 2
    with pytest.raises(LabError, match="all 128 lab slots are in use"):
        choose_slot(range(SLOTS))


def test_inventory_reaches_every_host_by_ssh_with_pinned_host_keys() -> None:
    plan = plan_lab("demo", slot=1, nodes=2, lans=2, witness=True, client=True)
    inv = inventory(plan, private_key="/k/id", known_hosts="/k/known", python="/usr/bin/python3")
    top = inv["all"]
    assert top["vars"]["ansible_user"] == "root"
    assert top["vars"]["ansible_ssh_private_key_file"] == "/k/id"
    args = top["vars"]["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/k/known" in args
    assert "StrictHostKeyChecking=yes" in args
    assert top["vars"]["safekit_lab_witness"] == "198.18.4.254"
    nodes = top["children"]["safekit_nodes"]["hosts"]
    assert set(nodes) == {"node1", "node2"}
    assert nodes["node2"]["ansible_host"] == "198.18.4.2"
    assert nodes["node2"]["safekit_lab_addresses"] == {"default": "198.18.4.2", "lan1": "198.18.5.2"}
    assert nodes["node2"]["safekit_lab_interfaces"] == {"default": "eth0", "lan1": "eth1"}
    assert set(top["children"]["safekit_witness"]["hosts"]) == {"witness"}
    assert set(top["children"]["safekit_clients"]["hosts"]) == {"client"}
    vips = [ipaddress.IPv4Address(v) for v in top["vars"]["safekit_lab_vips"]]
    used = {h.address for h in plan.hosts}
    assert vips and not used.intersection(vips)


def test_inventory_without_witness_or_client_has_only_nodes() -> None:
    plan = plan_lab("demo", slot=0, nodes=1)
    inv = inventory(plan, private_key="k", known_hosts="kh")
    assert list(inv["all"]["children"]) == ["safekit_nodes"]
    assert inv["all"]["vars"]["safekit_lab_witness"] is None
