"""Client-visible failover time of a mirror module when the primary node loses power.

On a 2-node lab with witness and client, a TCP responder runs on both nodes (so the figure measures
the cluster, not an application's start) and the client opens a new TCP connection to the VIP every
50 ms (200 ms connect timeout). At a random moment the primary is killed with `lab kill` (every
process SIGKILLed, cables pulled); the outage is from the cut (the moment `lab kill` pulled the
primary's cables, as bench/module_outage.py counts it) to the first answer from the new
primary. Profiles: the defaults (heartbeat 200 ms / 1.5 s) and the fast profile (50 ms / 200 ms),
with the witness and up-to-date rules on, while a CPU hog keeps one core busy. Also measured: the
outage when the service is started by start_prim, spurious transitions under load (must be 0),
and the engine's budgets (resident memory and idle CPU of safekitd with a mirror and a farm module, heartbeat
timing jitter p99 under load).

Writes bench/results/failover.json. Usage: bench/failover.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines.keepalived import measure_keepalived
from common import summary, write_result
from powercut import RESPONDER, RESPONDER_PORT, power_cut_outage
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.membership import clusterkey

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "modules" / "webmirror"
WEB_PORT = 8080
PROFILES = {"default": (None, None), "fast": ("50ms", "200ms")}
# Each profile with each witness kind: SafeKit's ping witness (with the VIP owner probe before a
# takeover) and the arbitrating witness (ADR 0010); results "default"/"fast" are the ping ones.
RUNS = {(kind, name): timing for kind in ("ping", "arbitrator") for name, timing in PROFILES.items()}
ANCHORS = {
    "keepalived_2.2.7_default_p50_s": 3.11,
    "keepalived_2.2.7_advert_0.1_p50_s": 0.34,
    "safekit_default_detection_s": 30.0,
}
TARGETS = {"default_p50_s": 3.0, "fast_p50_s": 0.5}


def userconfig(
    vip: str, witness: str, pulse: str | None, timeout: str | None, scripts: bool, *, kind: str = "ping"
) -> str:
    heart_attrs = "".join(f' {k}="{v}"' for k, v in (("pulse", pulse), ("timeout", timeout)) if v)
    user = (
        f'<user nicestoptimeout="10s" forcestoptimeout="10s"><var name="WEB_PORT" value="{WEB_PORT}"/>'
        '<var name="WEB_ROOT" value="/srv/www"/></user>'
        if scripts
        else ""
    )
    return f"""<!DOCTYPE safe>
<safe>
<service mode="mirror" defaultprim="alone">
  <heart{heart_attrs}><heartbeat name="default"/></heart>
  <vip><interface_list><interface><real_interface>
    <virtual_addr addr="{vip}" where="one_side_alias"/>
  </real_interface></interface></interface_list></vip>
  {user}
  <check><splitbrain ident="witness" exec="{kind}" arg="{witness}"/></check>
</service>
</safe>
"""


IDLE_MODULE = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="off"><farm port="4801"><lan name="default"/></farm></service>
</safe>
"""
"""The budgets' second module: a farm (membership on its own port, no VIP, no scripts), so that the
budget is safekitd's with one module of each kind."""


@contextlib.contextmanager
def cpu_hog() -> Iterator[None]:
    """Keep one core busy, as a loaded production node would be."""
    hog = subprocess.Popen(
        [sys.executable, "-c", "import os; os.sched_setaffinity(0, {0})\nwhile True: pass"]
    )
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


class Bench:
    def __init__(self, lab: Lab, staging: Path) -> None:
        self.lab = lab
        self.cluster = LabCluster(lab)
        self.staging = staging
        self.key = clusterkey.generate_key()
        plan = lab.plan()
        self.vip = str(plan.vips[0])
        self.witness = str(plan.host("witness").address)
        self.responders: list[subprocess.Popen[bytes]] = []
        self.arbiter: str | None = None  # ADDR:PORT of `safekit arbiter` on the witness, once started
        self.outliers: list[dict[str, object]] = []

    def install(
        self, pulse: str | None, timeout: str | None, *, scripts: bool, idle_module: bool, kind: str = "ping"
    ) -> None:
        for node in self.cluster.nodes:
            self.cluster.stop_daemon(node)
            self.lab.exec(node, ["sh", "-c", "rm -rf /opt/safekit/modules /var/safekit/modules"], check=True)
        module = self.staging / "bench"
        shutil.rmtree(module, ignore_errors=True)
        shutil.copytree(EXAMPLE, module)
        witness = self.witness
        if kind == "arbitrator":
            # the module is installed from scratch (generation 0): an arbiter that remembers the
            # previous install's generations would rightly refuse it (outdated)
            self.arbiter = self.cluster.start_arbiter(self.key, fresh=True)
            witness = self.arbiter
        (module / "conf" / "userconfig.xml").write_text(
            userconfig(self.vip, witness, pulse, timeout, scripts, kind=kind)
        )
        self.cluster.install(module, key=self.key)
        if idle_module:
            idle = self.staging / "idle"
            shutil.rmtree(idle, ignore_errors=True)
            (idle / "conf").mkdir(parents=True)
            (idle / "conf" / "userconfig.xml").write_text(IDLE_MODULE.format(witness=self.witness))
            self.cluster.install(idle, key=self.key)
        for node in self.cluster.nodes:
            self.start_node_software(node)
        self.cluster.safekit("node1", "prim", "-m", "bench")
        self.cluster.safekit("node2", "second", "-m", "bench")
        if idle_module:
            for node in ("node1", "node2"):
                self.cluster.safekit(node, "start", "-m", "idle")
        self.cluster.wait_state("node1", "bench", "PRIM")
        self.cluster.wait_state("node2", "bench", "SECOND")
        if idle_module:
            self.cluster.wait_state("node2", "idle", "UP", timeout=60)

    def start_node_software(self, node: str) -> None:
        self.responders.append(
            subprocess.Popen(
                self.lab.exec_argv(node, ["python3", "-c", RESPONDER.format(port=RESPONDER_PORT)]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.cluster.start_daemon(node)

    def primary(self) -> tuple[str, str]:
        for node in self.cluster.nodes:
            if self.cluster.state(node, "bench")["state"] in ("PRIM", "ALONE"):
                return node, next(n for n in self.cluster.nodes if n != node)
        raise RuntimeError("no primary")

    def one_run(self, port: int, slow: float = 3.0) -> float:
        """One power cut; an outage over `slow` seconds keeps the survivor's decision log for study."""
        primary, secondary = self.primary()
        outage = power_cut_outage(self.lab, primary, secondary, self.vip, port)
        if outage > slow:
            log = self.cluster.log(secondary, "bench").splitlines()[-40:]
            self.outliers.append({"outage_s": round(outage, 3), "killed": primary, "survivor_log": log})
        # Boot the killed node again and let it rejoin as secondary before the next run.
        self.lab.start(primary)
        self.start_node_software(primary)
        self.cluster.wait_state(primary, "bench", "SECOND", timeout=60)
        self.cluster.wait_state(secondary, "bench", "PRIM", timeout=60)
        return outage

    def transitions(self) -> float:
        total = 0.0
        for node in self.cluster.nodes:
            for line in self.metrics(node).splitlines():
                if line.startswith("safekit_module_transitions_total{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def metrics(self, node: str) -> str:
        url = f"http://{self.lab.plan().host(node).address}:9010/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def lateness_p99(self) -> float:
        worst = 0.0
        for node in self.cluster.nodes:
            for line in self.metrics(node).splitlines():
                if line.startswith("safekit_heartbeat_send_lateness_p99_seconds{"):
                    worst = max(worst, float(line.rsplit(" ", 1)[1]))
        return worst

    def daemon_budget(self, node: str, seconds: float) -> dict[str, float]:
        pid = self.cluster.daemon_pid(node)
        assert pid is not None
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        before = cpu()
        time.sleep(seconds)
        used = cpu() - before
        rss_kib = next(
            int(line.split()[1])
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return {
            "safekitd_rss_mib": round(rss_kib / 1024, 1),
            "safekitd_idle_cpu_percent": round(100 * used / seconds, 2),
            "safekitd_open_files": fds,
        }

    def close(self) -> None:
        for proc in self.responders:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()


def conclude(result: dict[str, object]) -> None:
    """Ratios against the baselines and whether the targets are met."""
    default_p50 = result["default"]["p50_s"]  # type: ignore[index]
    fast_p50 = result["fast"]["p50_s"]  # type: ignore[index]
    same_run = result["baseline_keepalived"]  # type: ignore[index]
    result["ratios"] = {
        "default_p50_over_keepalived_default_same_run": round(default_p50 / same_run["default"]["p50_s"], 2),
        "fast_p50_over_keepalived_fast_same_run": round(fast_p50 / same_run["fast"]["p50_s"], 2),
        "default_p50_over_keepalived_anchor": round(
            default_p50 / ANCHORS["keepalived_2.2.7_default_p50_s"], 2
        ),
        "fast_p50_over_keepalived_anchor": round(fast_p50 / ANCHORS["keepalived_2.2.7_advert_0.1_p50_s"], 2),
        "arbitrator_default_p50_over_keepalived_default_same_run": round(
            result["arbitrator_default"]["p50_s"] / same_run["default"]["p50_s"],
            2,  # type: ignore[index]
        ),
        "arbitrator_fast_p50_over_keepalived_fast_same_run": round(
            result["arbitrator_fast"]["p50_s"] / same_run["fast"]["p50_s"],
            2,  # type: ignore[index]
        ),
    }
    result["meets_targets"] = default_p50 <= TARGETS["default_p50_s"] and fast_p50 <= TARGETS["fast_p50_s"]


def write_budgets(bench: Bench) -> None:
    """safekitd's idle figures with a mirror and a farm module: 3 x 20 s on node2."""
    samples = [bench.daemon_budget("node2", 20) for _ in range(3)]
    write_result(
        "engine_budgets",
        {
            "modules": ["mirror", "farm"],
            "node": "node2 (secondary of the mirror, member of the farm)",
            "safekitd_idle_cpu_percent": max(s["safekitd_idle_cpu_percent"] for s in samples),
            "safekitd_rss_mib": max(s["safekitd_rss_mib"] for s in samples),
            "safekitd_open_files": max(s["safekitd_open_files"] for s in samples),
            "samples": samples,
            "limits": {"safekitd_idle_cpu_percent": 1.0, "safekitd_rss_mib": 80},
        },
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 runs per profile")
    parser.add_argument(
        "--budgets-only",
        action="store_true",
        help="only safekitd's idle figures with a mirror and a farm module (3 x 20 s): engine_budgets.json",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    runs = 3 if args.quick else args.runs
    lab = Lab("bfail")
    lab.down()
    lab.up(nodes=2, witness=True, client=True)
    staging = Path(tempfile.mkdtemp(prefix="safekit-bench-", dir="/var/tmp"))
    staging.chmod(0o755)
    bench = Bench(lab, staging)
    result: dict[str, object] = {"anchors": ANCHORS, "targets": TARGETS}
    try:
        # Budgets first, on an idle node with a mirror and a farm module and nothing else running.
        bench.install(None, None, scripts=False, idle_module=True)
        time.sleep(3)
        if args.budgets_only:
            write_budgets(bench)
            return 0
        budget = {"modules": ["mirror", "farm"], **bench.daemon_budget("node2", 5 if args.quick else 10)}
        with cpu_hog():
            before = bench.transitions()
            time.sleep(5 if args.quick else 20)
            spurious = bench.transitions() - before
            # The budget's figure: steady state under load (two modules, a CPU hog, nothing failing).
            budget["heartbeat_jitter_p99_ms"] = round(1000 * bench.lateness_p99(), 2)
            for (kind, profile), (pulse, timeout) in RUNS.items():
                name = profile if kind == "ping" else f"{kind}_{profile}"
                bench.install(pulse, timeout, scripts=False, idle_module=False, kind=kind)
                before = bench.transitions()
                time.sleep(3 if args.quick else 10)  # loaded and idle: nothing may move
                spurious += bench.transitions() - before
                slow = 1.0 if profile == "fast" else 4.0
                samples = [bench.one_run(RESPONDER_PORT, slow) for _ in range(runs)]
                result[name] = {**summary(samples), "runs": runs, "samples_s": [round(s, 3) for s in samples]}
                print(
                    f"{name}: p50 {result[name]['p50_s']:.3f} s, max {result[name]['max_s']:.3f} s",
                    flush=True,
                )  # type: ignore[index]
            # For information: including the reboots and restarts of the failover runs.
            budget["heartbeat_jitter_p99_ms_with_failovers"] = round(1000 * bench.lateness_p99(), 2)
            bench.install(None, None, scripts=True, idle_module=False)
            app_runs = max(3, runs // 3)
            samples = [bench.one_run(WEB_PORT) for _ in range(app_runs)]
            result["start_prim_service"] = {
                "profile": "default",
                **summary(samples),
                "runs": app_runs,
                "samples_s": [round(s, 3) for s in samples],
            }
            # The same-run baseline: keepalived (VRRP, no replication, no witness) on the same kind
            # of lab, probed the same way, under the same CPU hog.
            keepalived = {
                "default": measure_keepalived(runs, 1.0),
                "fast": measure_keepalived(runs, 0.1),
            }
            result["baseline_keepalived"] = keepalived
        result["spurious_transitions_under_load"] = int(spurious)
        result["outliers"] = bench.outliers
        result["budgets"] = {
            **budget,
            "limits": {
                "safekitd_rss_mib": 80,
                "safekitd_idle_cpu_percent": 1.0,
                "heartbeat_jitter_p99_ms": 20,
            },
        }
        conclude(result)
    finally:
        bench.close()
        lab.down()
        shutil.rmtree(staging, ignore_errors=True)
    path = write_result("failover", result)
    print(json.dumps(result, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
