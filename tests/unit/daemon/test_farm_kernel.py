"""The farm's sysctls, written where the rules need them (a scratch /proc/sys tree, no root)."""

from __future__ import annotations

from pathlib import Path

from safekit.daemon.farm_kernel import SYSCTLS, set_sysctls


def test_sysctls_are_written_for_every_interface(tmp_path: Path) -> None:
    for key in [*SYSCTLS, "net/ipv4/conf/eth0/arp_announce"]:
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
    assert set_sysctls(["eth0"], root=tmp_path) == []
    assert (tmp_path / "net/ipv4/conf/all/arp_announce").read_text() == "2"
    assert (tmp_path / "net/ipv4/conf/eth0/arp_announce").read_text() == "2"
    assert (tmp_path / "net/netfilter/nf_conntrack_tcp_loose").read_text() == "0"


def test_a_sysctl_that_cannot_be_written_is_reported(tmp_path: Path) -> None:
    (tmp_path / "net/ipv4/conf/all").mkdir(parents=True)
    failed = set_sysctls(["eth9"], root=tmp_path)
    assert failed == ["net.netfilter.nf_conntrack_tcp_loose", "net.ipv4.conf.eth9.arp_announce"]
