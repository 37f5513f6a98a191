"""Which modules lose a peer that no longer hears them (ADR 0076): mirror modules whose witness fences."""

from __future__ import annotations

import pytest

from safekit.config import parse_module
from safekit.daemon.witness_probes import two_way_liveness

MIRROR = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  {check}
</service>
</safe>
"""


@pytest.mark.parametrize(
    ("check", "two_way"),
    [
        ('<check><splitbrain ident="witness" exec="arbitrator" arg="198.18.0.50:9455"/></check>', True),
        # a secondary that still hears its primary is what keeps it from taking over beside it
        ('<check><splitbrain ident="witness" exec="ping" arg="198.18.0.50"/></check>', False),
        ("", False),
    ],
    ids=["arbitrator", "ping witness", "no witness"],
)
def test_only_a_fencing_witness_makes_liveness_two_way(check: str, two_way: bool) -> None:
    config, _ = parse_module(MIRROR.format(check=check), env={})
    assert two_way_liveness(config) is two_way
