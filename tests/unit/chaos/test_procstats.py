"""Which of a lab host's processes are the engine's, from their command lines."""

from __future__ import annotations

from safekit.chaos.procstats import EngineFigures, ProcessFigures, role_of


def test_safekitd_and_replication_processes_are_recognised_and_nothing_else() -> None:
    venv = "/work/main/.venv/bin"
    assert role_of(f"{venv}/python {venv}/safekitd --daemon --pidfile /run/safekitd.pid") == "safekitd"
    native = "/work/main/native/build"
    assert role_of(f"{native}/safekit-rfs-primary /var/safekit/m/rfs/primary.spec.json") == "rfs primary"
    assert role_of(f"{native}/safekit-rfs-secondary /x.json") == "rfs secondary"
    assert role_of(f"{venv}/python -m safekit.rfs splitbrain-save /x.json") is None  # a step, not the engine
    assert role_of("python3 /opt/safekit/modules/chaosapp/bin/appendsvc.py 8090 /srv/chaos/data") is None
    assert role_of(f"{venv}/python {venv}/safekit state -m chaosapp") is None
    assert role_of("/usr/sbin/sshd -f /x/sshd_config") is None


def test_figures_are_summed_by_role() -> None:
    figures = EngineFigures(
        [
            ProcessFigures(1, "safekitd", 46000, 17),
            ProcessFigures(2, "rfs primary", 32000, 15),
            ProcessFigures(3, "rfs secondary", 30000, 13),
        ]
    )
    assert figures.total("safekitd") == (46000, 17)
    assert figures.total("rfs") == (62000, 28)
