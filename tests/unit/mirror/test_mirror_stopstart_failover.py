"""A stopstart of the primary role hands the module over to an in-sync secondary (SafeKit's
behaviour: the peer takes over while the primary stops; the restarted node becomes secondary).

Two-node simulator, real machines and heartbeats, no script failures."""

from __future__ import annotations

import pytest
from mirror_sim import NODES, Cluster, Op, persisted_for, play

from safekit.mirror import CheckerAction, CommandKind, ModuleState

SETTLE = 25.0


def started(*, witness: bool, seed: int, defaultprim: str = "alone") -> Cluster:
    cluster = Cluster(
        witness=witness, seed=seed, persisted=persisted_for("synced"), fail_rate=0.0, defaultprim=defaultprim
    )
    play(cluster, [Op(SETTLE, "heal")])
    states = {n: cluster.nodes[n].state.module_state for n in NODES}
    assert states == {"n1": ModuleState.PRIM, "n2": ModuleState.SECOND}, cluster.dump()
    return cluster


def states(cluster: Cluster) -> dict[str, ModuleState]:
    return {n: cluster.nodes[n].state.module_state for n in NODES}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("witness", [False, True])
def test_stopstart_command_on_the_primary_fails_over(seed: int, witness: bool) -> None:
    cluster = started(witness=witness, seed=seed)
    cluster.command("n1", CommandKind.STOPSTART)
    cluster.advance(30.0)
    assert cluster.violations == [], "\n".join(cluster.violations) + "\n" + cluster.dump()
    assert states(cluster) == {"n1": ModuleState.SECOND, "n2": ModuleState.PRIM}, cluster.dump()
    assert "n1 stopstarted the primary role" in "\n".join(cluster.trace), cluster.dump()


@pytest.mark.parametrize("seed", range(6))
def test_checker_stopstart_on_the_primary_fails_over(seed: int) -> None:
    cluster = started(witness=False, seed=seed)
    cluster.checker("n1", CheckerAction.STOPSTART)
    cluster.advance(30.0)
    assert cluster.violations == []
    assert states(cluster) == {"n1": ModuleState.SECOND, "n2": ModuleState.PRIM}, cluster.dump()


@pytest.mark.parametrize("seed", range(4))
def test_stopstart_with_a_secondary_out_of_sync_restarts_locally(seed: int) -> None:
    cluster = started(witness=False, seed=seed)
    cluster.replica_fault("n2")  # the secondary's copy is no longer up to date (n1 learns it later)
    cluster.command("n1", CommandKind.STOPSTART)
    cluster.advance(30.0)
    assert cluster.violations == []
    assert cluster.nodes["n1"].state.module_state in (ModuleState.PRIM, ModuleState.ALONE), cluster.dump()


@pytest.mark.parametrize("seed", range(4))
def test_restart_command_on_the_primary_stays_local(seed: int) -> None:
    cluster = started(witness=False, seed=seed)
    cluster.command("n1", CommandKind.RESTART)
    cluster.advance(30.0)
    assert cluster.violations == []
    assert states(cluster) == {"n1": ModuleState.PRIM, "n2": ModuleState.SECOND}, cluster.dump()
