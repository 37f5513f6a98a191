"""safekitd as a systemd service, on a lab host whose PID 1 is systemd (systemd_host.py says how it boots).

The unit is packaging/systemd/safekitd.service as shipped, with ExecStart pointing at this test's
virtualenv (and PYTHONPATH at the source under test, SAFEKIT_RFS_NATIVE_DIR at the checkout's native
programs - the replication data path, `make -C native` - in a drop-in). One mirror module whose peer
never answers goes ALONE and starts its "application" (a process started by start_prim); every
script call is appended to /var/lib/events with whether that application is alive at that instant.

The tests run in order on one host, each leaving the module ALONE with its application running.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from systemd_host import DEFAULT_ROOT, SystemdHost, booted, build_root

import safekit
from safekit.membership import clusterkey
from safekit.rfs import native

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "packaging" / "systemd" / "safekitd.service"
VENV = Path(sys.prefix)
SRC = Path(safekit.__file__).resolve().parents[1]
NATIVE_BUILD = native.CHECKOUT_BUILD  # the replication programs of the checkout under test
NAME = os.environ.get("SAFEKIT_SYSTEMD_LAB", "sysd1")
ADDRESS = "198.18.170.1"
MODULE = "app"

CLUSTER = f"""<cluster>
  <lans>
    <lan name="default">
      <node name="{NAME}" addr="{ADDRESS}"/>
      <node name="peer" addr="198.18.170.2"/>
    </lan>
  </lans>
</cluster>
"""

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone" failover="on" boot="on">
  <heart>
    <heartbeat name="default"/>
  </heart>
  <rfs async="second">
    <replicated dir="/srv/data"/>
  </rfs>
  <user nicestoptimeout="20s" forcestoptimeout="20s" logging="userlog"/>
</service>
</safe>
"""

# Every script: one line "TIME SCRIPT ARGS fuse=yes|no app=yes|no" (is the replicated directory
# mounted, is the application alive at that instant); start_prim starts the application (a process
# in safekitd's control group, as an application started by a script is), stop_prim ends it.
SCRIPT = """#!/bin/sh
app=$(cat /var/lib/app.pid 2>/dev/null)
alive=no; [ -n "$app" ] && kill -0 "$app" 2>/dev/null && alive=yes
fuse=no; mountpoint -q /srv/data && fuse=yes
echo "$(date +%s.%N) {name} $* fuse=$fuse app=$alive" >> /var/lib/events
case {name} in
  start_prim) sleep 100000 </dev/null >/dev/null 2>&1 & echo $! > /var/lib/app.pid ;;
  stop_prim) [ -n "$app" ] && kill "$app"; rm -f /var/lib/app.pid ;;
esac
exit 0
"""
SCRIPTS = ("prestart", "start_prim", "stop_prim", "start_second", "stop_second", "poststop")


@pytest.fixture(scope="module")
def host(root_required: None) -> Iterator[SystemdHost]:
    base = build_root(Path(os.environ.get("SAFEKIT_SYSTEMD_ROOT", DEFAULT_ROOT)))
    for role in native.PROGRAMS:  # EngineError says what is missing (`make -C native` builds them)
        native.find_program(role, {native.NATIVE_DIR_ENV: str(NATIVE_BUILD)})
    binds = sorted({VENV, Path(sys.base_prefix).resolve(), SRC, NATIVE_BUILD})
    with booted(NAME, base, binds) as h:
        h.sh(
            "ip link set lo up && ip link add lan0 type veth peer name lan0p && "
            f"ip addr add {ADDRESS}/24 dev lan0 && ip link set lan0 up && ip link set lan0p up"
        )
        key = clusterkey.encode_key_file(clusterkey.generate_key())
        h.write("/etc/safekit/cluster.xml", CLUSTER)
        h.write("/etc/safekit/cluster.key", key, 0o600)
        h.write(f"/opt/safekit/modules/{MODULE}/conf/userconfig.xml", USERCONFIG)
        for name in SCRIPTS:
            h.write(f"/opt/safekit/modules/{MODULE}/bin/{name}", SCRIPT.format(name=name), 0o755)
        h.write(
            "/etc/systemd/system/safekitd.service", UNIT.read_text().replace("/opt/safekit/venv", str(VENV))
        )
        h.write(
            "/etc/systemd/system/safekitd.service.d/source.conf",
            f"[Service]\nEnvironment=PYTHONPATH={SRC}\nEnvironment={native.NATIVE_DIR_ENV}={NATIVE_BUILD}\n",
        )
        h.run(["systemctl", "daemon-reload"])
        yield h


def state(h: SystemdHost) -> dict[str, Any]:
    out = h.run([str(VENV / "bin" / "safekit"), "state", "-m", MODULE, "--json"], timeout=30).stdout
    module: dict[str, Any] = json.loads(out)["modules"][0]
    return module


class Call(NamedTuple):
    name: str
    args: str
    mounted: bool
    """The replicated directory was mounted (the replication process ran)."""
    app: bool
    """The application was alive."""


def events(h: SystemdHost) -> list[Call]:
    """The script calls, in order."""
    out = h.sh("cat /var/lib/events 2>/dev/null || true")
    calls = []
    for line in out.splitlines():
        _stamp, name, *rest = line.split()
        calls.append(Call(name, " ".join(rest[:-2]), rest[-2] == "fuse=yes", rest[-1] == "app=yes"))
    return calls


def wait_alone_with_app(h: SystemdHost, timeout: float = 60) -> str:
    """Wait for the module ALONE and its application running; returns the application's PID."""
    deadline = time.monotonic() + timeout
    current: dict[str, Any] = {}
    while time.monotonic() < deadline:
        result = h.run(
            [str(VENV / "bin" / "safekit"), "state", "-m", MODULE, "--json"], check=False, timeout=30
        )
        if result.returncode == 0:
            current = json.loads(result.stdout)["modules"][0]
            if current["state"] == "ALONE" and current["readiness"] == "Ready":
                pid = h.sh(
                    "p=$(cat /var/lib/app.pid 2>/dev/null) && kill -0 $p && echo $p", check=False
                ).strip()
                if pid:
                    return pid
        time.sleep(0.2)
    raise AssertionError(f"module not ALONE with its application after {timeout} s: {current}\n{journal(h)}")


def journal(h: SystemdHost, *args: str) -> str:
    return h.run(["journalctl", "-u", "safekitd", "--no-pager", "-o", "cat", *args], check=False).stdout


def service(h: SystemdHost) -> dict[str, str]:
    return h.show("safekitd", "MainPID", "ActiveState", "SubState", "NRestarts", "StatusText", "Result")


def wait_new_main_pid(h: SystemdHost, old: str, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    now = service(h)
    while time.monotonic() < deadline:
        now = service(h)
        if now["MainPID"] not in ("0", old) and now["ActiveState"] == "active":
            return now
        time.sleep(0.2)
    raise AssertionError(f"safekitd not restarted after {timeout} s: {now}\n{journal(h)}")


def test_start_returns_once_safekitd_is_ready(host: SystemdHost) -> None:
    assert host.sh("cat /proc/1/comm").strip() == "systemd"
    host.run(["systemctl", "start", "safekitd"], timeout=120)
    # Type=notify: `systemctl start` returned after READY=1, so the control socket answers now.
    assert state(host)["state"] in ("WAIT", "ALONE", "STOP")
    unit = host.show("safekitd", "Type", "NotifyAccess", "WatchdogUSec", "KillMode", "StatusText")
    assert unit["Type"] == "notify"
    assert unit["NotifyAccess"] == "main"
    assert unit["WatchdogUSec"] == "30s"
    assert unit["KillMode"] == "process"
    assert unit["StatusText"] == f"running, node {NAME}"
    # A first start without the peer waits (rule 1): the operator makes it primary, once.
    host.run([str(VENV / "bin" / "safekit"), "prim", "-m", MODULE], timeout=60)
    wait_alone_with_app(host)
    assert [e.name for e in events(host)][-1] == "start_prim"


def test_the_replicated_directory_is_mounted_for_the_whole_host(host: SystemdHost) -> None:
    """No mount namespace in the unit: the FUSE mount the replication process made is the one a
    login shell, a backup or an application started as its own unit sees."""
    wait_alone_with_app(host)
    assert host.sh("findmnt -n -o FSTYPE /srv/data").strip().startswith("fuse")
    host.sh("echo written-from-outside > /srv/data/probe && sync /srv/data/probe")
    # Another unit (its own cgroup, systemd's mount namespace) sees the same mount and file.
    out = host.run(["systemd-run", "--wait", "--pipe", "--quiet", "cat", "/srv/data/probe"]).stdout
    assert out.strip() == "written-from-outside"


def test_restart_runs_the_stop_scripts_before_anything_is_killed(host: SystemdHost) -> None:
    app = wait_alone_with_app(host)
    before = service(host)
    mark = len(events(host))
    host.run(["systemctl", "restart", "safekitd"], timeout=180)
    after = service(host)
    assert after["MainPID"] != before["MainPID"]
    calls = events(host)[mark:]
    names = [c.name for c in calls]
    assert names[:2] == ["stop_prim", "poststop"], calls
    # stop_prim found the application alive and its data mounted: systemd killed neither the
    # application nor the replication process first (KillMode=process).
    assert calls[0].app and calls[0].mounted, calls
    assert "force" not in calls[0].args
    new_app = wait_alone_with_app(host)
    assert new_app != app
    assert [c.name for c in events(host)[mark + 2 :]] == ["prestart", "start_prim"]


def test_kill_9_is_restarted_and_the_module_recovers(host: SystemdHost) -> None:
    app = wait_alone_with_app(host)
    before = service(host)
    mark = len(events(host))
    host.run(["kill", "-KILL", before["MainPID"]])
    after = wait_new_main_pid(host, before["MainPID"], timeout=30)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    new_app = wait_alone_with_app(host)
    calls = events(host)[mark:]
    # The new safekitd stops what the dead one left (the application was still running: nothing
    # killed it), forced, before the module starts again.
    assert calls[0].name == "stop_prim" and "force" in calls[0].args and calls[0].app, calls
    assert [c.name for c in calls[-2:]] == ["prestart", "start_prim"], calls
    assert new_app != app
    assert "the previous safekitd died" in journal(host, "-p", "warning")


def test_the_watchdog_restarts_a_hung_daemon(host: SystemdHost) -> None:
    # The shipped 30 s, shortened for the test; the mechanism is the same.
    host.write("/etc/systemd/system/safekitd.service.d/watchdog.conf", "[Service]\nWatchdogSec=3s\n")
    host.run(["systemctl", "daemon-reload"])
    host.run(["systemctl", "restart", "safekitd"], timeout=180)
    wait_alone_with_app(host)
    healthy = service(host)
    # A loop that runs pings: no restart for three watchdog periods.
    time.sleep(9)
    assert service(host)["MainPID"] == healthy["MainPID"]
    assert service(host)["NRestarts"] == healthy["NRestarts"]
    mark = len(events(host))
    host.run(["kill", "-STOP", healthy["MainPID"]])
    stopped_at = time.monotonic()
    after = wait_new_main_pid(host, healthy["MainPID"], timeout=40)
    elapsed = time.monotonic() - stopped_at
    assert int(after["NRestarts"]) == int(healthy["NRestarts"]) + 1
    assert 2 <= elapsed <= 30, elapsed
    log = host.run(["journalctl", "--no-pager", "-u", "safekitd"]).stdout
    assert "Watchdog timeout" in log
    # faulthandler: where the loop was when systemd aborted it.
    assert "Fatal Python error: Aborted" in log
    wait_alone_with_app(host)
    assert events(host)[mark].name == "stop_prim"


def test_journal_lines_carry_their_priority(host: SystemdHost) -> None:
    warnings = journal(host, "-p", "warning")
    everything = journal(host)
    assert "running (pid" in everything
    assert "running (pid" not in warnings  # INFO is not a warning
    assert "the previous safekitd died" in warnings
    # journald stamps the lines: safekitd does not.
    line = next(line for line in everything.splitlines() if "running (pid" in line)
    assert line.startswith("INFO safekit.daemon: safekitd ")


def test_stop_stops_the_module_through_its_scripts(host: SystemdHost) -> None:
    wait_alone_with_app(host)
    mark = len(events(host))
    host.run(["systemctl", "stop", "safekitd"], timeout=180)
    calls = events(host)[mark:]
    assert [c.name for c in calls] == ["stop_prim", "poststop"]
    assert calls[0].app and calls[0].mounted
    assert not calls[1].mounted  # the replication process stopped after stop_prim, before poststop
    assert host.sh("cat /var/lib/app.pid 2>/dev/null || echo none").strip() == "none"
    assert service(host)["ActiveState"] == "inactive"


def test_a_configuration_error_is_not_restarted_in_a_loop(host: SystemdHost) -> None:
    good = host.sh("cat /etc/safekit/cluster.xml")
    host.write("/etc/safekit/cluster.xml", good.replace("<lans>", "<lans><oops/>"))
    try:
        result = host.run(["systemctl", "start", "safekitd"], check=False, timeout=60)
        assert result.returncode != 0
        before = service(host)
        time.sleep(5)  # more than RestartSec
        after = host.show("safekitd", "ActiveState", "Result", "ExecMainStatus", "NRestarts")
        assert after["ActiveState"] == "failed"
        assert after["Result"] == "exit-code"
        assert after["ExecMainStatus"] == "78"
        assert after["NRestarts"] == before["NRestarts"]
        # The reason, at error priority, is what `systemctl status` shows last.
        assert "oops" in journal(host, "-p", "err", "-n", "5")
    finally:
        host.write("/etc/safekit/cluster.xml", good)
        host.run(["systemctl", "reset-failed", "safekitd"], check=False)
