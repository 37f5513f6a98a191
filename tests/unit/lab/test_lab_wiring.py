"""Fault injection renders the switch from recorded state: cuts, power and isolations."""

from __future__ import annotations

from safekit.lab.topology import plan_lab
from safekit.lab.wiring import FaultState, isolation_ruleset, port_states

PLAN = plan_lab("lab", slot=0, nodes=2, lans=2, witness=True, client=True)


def test_all_ports_up_without_faults() -> None:
    states = port_states(PLAN, FaultState())
    assert states == {
        "node1-0": True,
        "node1-1": True,
        "node2-0": True,
        "node2-1": True,
        "witness-0": True,
        "client-0": True,
    }


def test_a_cut_pulls_one_cable_and_a_power_cut_pulls_them_all() -> None:
    faults = FaultState(cuts={("node1", "lan1")}, killed={"node2"})
    states = port_states(PLAN, faults)
    assert states["node1-0"] and not states["node1-1"]
    assert not states["node2-0"] and not states["node2-1"]


def test_heal_of_one_host_leaves_the_others_faults() -> None:
    faults = FaultState(
        cuts={("node1", "default"), ("node2", "lan1")},
        isolations={frozenset(("node1", "witness")), frozenset(("node2", "client"))},
        killed={"node1"},
    )
    faults.drops = {("node1", "node2"): 100, ("node2", "node1"): 100, ("node2", "client"): 40}
    faults.heal("node1")
    assert faults.cuts == {("node2", "lan1")}
    assert faults.isolations == {frozenset(("node2", "client"))}
    assert faults.drops == {("node2", "client"): 40}, "a drop goes with the heal of either host"
    assert faults.killed == {"node1"}, "heal plugs cables; it does not boot a killed host"
    faults.heal()
    assert not faults.cuts and not faults.isolations and not faults.drops


def test_fault_state_survives_its_json_form() -> None:
    faults = FaultState(
        cuts={("node1", "default")},
        isolations={frozenset(("node1", "node2"))},
        killed={"client"},
        drops={("node1", "node2"): 100, ("node2", "witness"): 35},
    )
    again = FaultState.from_json(faults.to_json())
    assert again == faults


def test_isolation_drops_both_directions_on_every_lan_of_both_hosts() -> None:
    script = isolation_ruleset(PLAN, FaultState(isolations={frozenset(("node1", "node2"))}))
    assert 'iifname { "node1-0", "node1-1" } oifname { "node2-0", "node2-1" } drop' in script
    assert 'iifname { "node2-0", "node2-1" } oifname { "node1-0", "node1-1" } drop' in script


def test_ruleset_replaces_the_table_atomically_and_is_empty_when_healed() -> None:
    script = isolation_ruleset(PLAN, FaultState())
    lines = script.splitlines()
    # add-then-delete-then-define in one `nft -f` transaction: valid whether or not the table exists
    assert lines[0].startswith("table bridge ") and lines[1].startswith("delete table bridge ")
    assert "drop" not in script


def test_a_one_way_drop_cuts_one_direction_on_every_lan() -> None:
    script = isolation_ruleset(PLAN, FaultState(drops={("node1", "node2"): 100}))
    assert 'iifname { "node1-0", "node1-1" } oifname { "node2-0", "node2-1" } drop' in script
    assert 'iifname { "node2-0", "node2-1" }' not in script, "node2's frames to node1 still pass"


def test_a_lossy_drop_draws_each_frame_with_its_share() -> None:
    script = isolation_ruleset(PLAN, FaultState(drops={("node2", "node1"): 30, ("node1", "node2"): 30}))
    assert (
        'iifname { "node2-0", "node2-1" } oifname { "node1-0", "node1-1" } numgen random mod 100 < 30 drop'
        in script
    )
    assert (
        'iifname { "node1-0", "node1-1" } oifname { "node2-0", "node2-1" } numgen random mod 100 < 30 drop'
        in script
    )


def test_an_old_state_file_without_drops_still_loads() -> None:
    faults = FaultState.from_json({"killed": [], "cuts": [["node1", "lan1"]], "isolations": []})
    assert faults.drops == {} and faults.cuts == {("node1", "lan1")}
