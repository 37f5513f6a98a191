"""The modules of `safekit module templates` at a power cut: what a client sees, and how long the
application takes to answer once the module starts it.

Each template is made and installed as a user would (safekit.lab.modules, as the template tests of
tests/integration/modules/ do) on its own lab of two nodes, a witness (mirrors) and a client. Then,
`runs` times:

- the serving node loses power (`lab kill`): a mirror's primary; for a farm, the member that serves
  the client's address (the farm hashes client addresses: that node's clients are the ones cut off);
- outage: from the cut (the moment `lab kill` pulled the node's cables, which it reports; as
  bench/failover.py counts it; `lab kill` waits only for its own lab's lock, ADR 0066) to the first
  answer through the VIP, measured on the client by a probe
  started every 50 ms (HTTP: a 200 from the survivor; databases: their own client, psql / mariadb,
  running `SELECT 1` every 100 ms) - bench/powercut.py's probes;
- start_prim -> answer: from the survivor's module log, the wall-clock time of `running start_prim`
  (the module's script starting the application) to the client's first answer. For a farm nothing is
  started on the survivor: the figure is from the survivor's `buckets:` line taking the lost share
  (the killed node's clients given to it) to that answer;
- the killed node boots again (`lab start`, safekitd started: the module starts from its boot state)
  and the module settles (secondary in sync / both members in the balancing set) before the next run.

Per module: the runs' outages (p50, max), start_prim -> answer p50, the machine's load during its
runs, and the budgets the project's benchmarks report with their figures (safekitd's RSS and idle CPU
over 10 s on the survivor, after the last run). Written into bench/results/modules.json under
`outage_after_power_cut` (the file's other keys, the pgbench rows of bench/modules.py, are kept).

`make bench-module-outage` (5 runs per module); QUICK=1: 2 runs. `--only T,T`: those templates (the
others' previous rows are kept). cloud_lb_farm is skipped by name: it needs the cloud fake (bench/cloud.py
measures it). kvm_vm runs the template's lab test's tiny guest under QEMU's software emulation (no
/dev/kvm here): its figures are a TCG guest's boot, not a KVM one's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests" / "integration" / "modules"))

from test_vm_template import DOMAIN, build_guest, libvirt_host  # type: ignore[import-not-found]

from common import RESULTS, machine
from modules import daemon_budget
from powercut import COMMAND_PROBE, PROBE, power_cut_answer
from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.lab.modules import install_modules

KEY = "outage_after_power_cut"
LAB_PREFIX = "h16b"
LAB_SUFFIX = {
    "mirror": "mir",
    "postgresql": "pg",
    "mariadb": "db",
    "nginx_farm": "ngx",
    "apache_farm": "apa",
    "kvm_vm": "vm",
}
"""Lab names are at most 9 characters (they become part of interface names)."""
PG_PASSWORD = "benchpg"  # noqa: S105 - a lab database, gone with the lab
DB_PASSWORD = "benchdb"  # noqa: S105
WEB_PORT = 8080
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")

SKIPPED = {
    "cloud_lb_farm": "needs the cloud fake (a fake cloud load balancer API and its health checks): "
    "bench/cloud.py and tests/integration/modules/test_cloud_lb_farm_template.py run it; not a lab power cut",
}


NOT_DEPLOYED = "not deployed by this benchmark"
VM_DIR = "/srv/benchvm"
VM_NAME = "tinyvm"


@dataclass(frozen=True)
class Template:
    """How one template is deployed and probed on a lab."""

    name: str
    farm: bool
    values: Callable[[Lab], dict[str, str]]
    probe: Callable[[Lab, str], list[str]]
    """argv of the client probe, given the lab and the node expected to answer."""
    setup: Callable[[Lab, LabCluster], None] = field(default=lambda lab, cluster: None)
    """Before safekitd starts on the nodes."""
    boot: Callable[[Lab, str], None] = field(default=lambda lab, node: None)
    """On a node booted again after its power cut, before safekitd starts."""


def _vip(lab: Lab) -> str:
    return str(lab.plan().vips[0])


def _mirror_values(lab: Lab) -> dict[str, str]:
    return {"virtual_ip": _vip(lab), "witness": str(lab.plan().host("witness").address)}


def _http_probe(path: str) -> Callable[[Lab, str], list[str]]:
    def argv(lab: Lab, survivor: str) -> list[str]:
        return ["python3", "-c", PROBE, _vip(lab), str(WEB_PORT), survivor, "90", path]

    return argv


def _psql_probe(lab: Lab, survivor: str) -> list[str]:
    conninfo = f"host={_vip(lab)} port=5432 user=postgres dbname=postgres connect_timeout=2"
    client = ["env", f"PGPASSWORD={PG_PASSWORD}", "psql", "-X", "-q", "-At", conninfo, "-c", "SELECT 1"]
    return ["python3", "-c", COMMAND_PROBE, "90", *client]


def _mariadb_probe(lab: Lab, survivor: str) -> list[str]:
    client = ["mariadb", "--no-defaults", "-h", _vip(lab), "-P", "3306", "-u", "app", f"-p{DB_PASSWORD}",
              "--connect-timeout=2", "-N", "-B", "-e", "SELECT 1"]  # fmt: skip
    return ["python3", "-c", COMMAND_PROBE, "90", *client]


def _farm_values(lab: Lab) -> dict[str, str]:
    return {"nodes": "node1,node2", "docroot": "/srv/www", "virtual_ip": _vip(lab), "port": str(WEB_PORT),
            "farm_port": "4910"}  # fmt: skip


def _farm_pages(lab: Lab, cluster: LabCluster) -> None:
    # the same content on every node, but the page says who served it (tests/integration/modules)
    for node in cluster.nodes:
        lab.exec(node, ["sh", "-c", f"mkdir -p /srv/www && echo {node} > /srv/www/who"], check=True)


def _mirror_pages(lab: Lab, cluster: LabCluster) -> None:
    # the generic mirror serves its replicated directory (http.server): any page is an answer
    for node in cluster.nodes:
        lab.exec(node, ["mkdir", "-p", "/srv/benchapp"], check=True)


def _vm_setup(lab: Lab, cluster: LabCluster) -> None:
    """The kvm_vm template's lab test's guest (busybox under QEMU's TCG, its HTTP service on the
    VIP's port 8080; /cgi-bin/add?N answers `ok N` once written and flushed to the replicated disk)
    and each host's private libvirt set-up, reused from tests/integration/modules/test_vm_template.py
    (as tests/integration/ansible/test_kvm_vm_playbook.py does)."""
    for node in cluster.nodes:
        libvirt_host(lab, node)
    stage = Path(tempfile.mkdtemp(prefix="safekit-vm-", dir="/var/tmp"))  # lab hosts see /var/tmp
    try:
        build_guest(stage)
        (stage / f"{VM_NAME}.xml").write_text(
            DOMAIN.format(name=VM_NAME, dir=VM_DIR, vip=_vip(lab), port=WEB_PORT)
        )
        lab.exec("node1", ["sh", "-c", f"mkdir -p {VM_DIR} && cp {stage}/* {VM_DIR}/"], check=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _vm_boot(lab: Lab, node: str) -> None:
    libvirt_host(lab, node)  # a booted host has fresh mounts: its libvirt directories again


TEMPLATES = {
    t.name: t
    for t in (
        Template(
            "mirror",
            farm=False,
            values=lambda lab: {
                **_mirror_values(lab),
                "replicated_dir": "/srv/benchapp",
                "heartbeat_port": "4810",
                "app_command": f"python3 -m http.server {WEB_PORT}",
                "check_port": str(WEB_PORT),
            },
            probe=lambda lab, survivor: _http_probe("/")(lab, "*"),
            setup=_mirror_pages,
        ),
        Template(
            "postgresql",
            farm=False,
            values=lambda lab: {
                **_mirror_values(lab),
                "pg_password": PG_PASSWORD,
                "heartbeat_port": "4820",
                "pg_clients": str(lab.plan().lans[0].network),
            },
            probe=_psql_probe,
        ),
        Template(
            "mariadb",
            farm=False,
            values=lambda lab: {
                **_mirror_values(lab),
                "db_password": DB_PASSWORD,
                "heartbeat_port": "4830",
                "db_clients": str(lab.plan().lans[0].network),
            },
            probe=_mariadb_probe,
        ),
        Template("nginx_farm", farm=True, values=_farm_values, probe=_http_probe("/who"), setup=_farm_pages),
        Template("apache_farm", farm=True, values=_farm_values, probe=_http_probe("/who"), setup=_farm_pages),
        Template(
            "kvm_vm",
            farm=False,
            values=lambda lab: {
                **_mirror_values(lab),
                "vm_name": VM_NAME,
                "vm_dir": VM_DIR,
                "shutdown_timeout": "30",
                "heartbeat_port": "4840",
            },
            probe=lambda lab, survivor: _http_probe("/cgi-bin/add?0")(lab, "*"),
            setup=_vm_setup,
            boot=_vm_boot,
        ),
    )
}
ORDER = ("mirror", "nginx_farm", "postgresql", "mariadb", "apache_farm", "kvm_vm", "cloud_lb_farm")


# ---------------------------------------------------------------------------- pure parts


def p50(samples: list[float]) -> float:
    """The median of the runs (the figure the issue asks for), rounded to the millisecond."""
    if not samples:
        raise ValueError("no runs")
    return round(statistics.median(samples), 3)


def module_row(outages: list[float], to_answer: list[float | None]) -> dict[str, Any]:
    """One module's figures from its runs."""
    answered = [s for s in to_answer if s is not None]
    return {
        "runs": len(outages),
        "outage_p50_s": p50(outages),
        "outage_max_s": round(max(outages), 3),
        "outage_samples_s": [round(s, 3) for s in outages],
        "start_prim_to_answer_p50_s": p50(answered) if answered else None,
        "start_prim_to_answer_samples_s": [None if s is None else round(s, 3) for s in to_answer],
    }


def merge_section(existing: Mapping[str, Any], section: Mapping[str, Any]) -> dict[str, Any]:
    """bench/results/modules.json with KEY's modules updated by `section`'s: the file's other keys
    (bench/modules.py's rows) and the modules this run did not measure are kept as they were."""
    merged = dict(existing)
    old = dict(merged.get(KEY, {}))
    modules = {**old.get("modules", {}), **section.get("modules", {})}
    skipped = {**old.get("skipped", {}), **section.get("skipped", {})}
    failed = {**old.get("failed", {}), **section.get("failed", {})}
    for name in section.get("modules", {}):
        skipped.pop(name, None)
        failed.pop(name, None)
    merged[KEY] = {**old, **section, "modules": modules, "skipped": skipped, "failed": failed}
    return merged


def log_times(log: str, marker: str, after: float) -> list[float]:
    """Wall-clock times (epoch seconds, local time of the log) of the log lines containing `marker`
    at or after `after`."""
    found = []
    for line in log.splitlines():
        match = LOG_TIME.match(line)
        if match is None or marker not in line:
            continue
        when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if when >= after:
            found.append(when)
    return found


def markdown_table(section: Mapping[str, Any]) -> str:
    """The figures of KEY as docs/modules.md shows them, in ORDER; skipped and failed modules named."""
    lines = [
        "| template | runs | outage p50 | outage max | start_prim -> answer p50 | load (1 min) | "
        "safekitd RSS | safekitd idle CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    modules = section.get("modules", {})
    for name in ORDER:
        if name in modules:
            row = modules[name]
            loads = row["loadavg_1m_during_runs"]
            to_answer = row["start_prim_to_answer_p50_s"]
            budgets = row["budgets"]
            lines.append(
                f"| `{name}` | {row['runs']} | {row['outage_p50_s']:.2f} s | {row['outage_max_s']:.2f} s | "
                f"{'-' if to_answer is None else f'{to_answer:.2f} s'} | {min(loads):.0f}-{max(loads):.0f} | "
                f"{budgets['safekitd_rss_mib']} MiB | {budgets['safekitd_idle_cpu_percent']} % |"
            )
    for kind in ("skipped", "failed"):
        for name, reason in section.get(kind, {}).items():
            lines.append(f"| `{name}` | {kind}: {reason} | | | | | | |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the lab


class ModuleBench:
    def __init__(self, template: Template) -> None:
        self.template = template
        self.module = f"b{template.name.replace('_', '')}"[:14]
        self.lab = Lab(f"{LAB_PREFIX}{LAB_SUFFIX[template.name]}")
        self.cluster = LabCluster(self.lab)
        self.restarts: list[int] = []
        self.kill_s: list[float] = []
        """Per run: how long `lab kill` took (the outage is counted from the cut, inside it)."""
        """Per run: the survivor's local restarts of the application (a checker asking restart) until
        the answer."""

    def up(self) -> None:
        self.lab.down()  # leftovers of an interrupted earlier run
        self.lab.up(nodes=2, witness=not self.template.farm, client=True)
        install_modules(self.cluster, {self.module: (self.template.name, self.template.values(self.lab))})
        self.template.setup(self.lab, self.cluster)
        for node in self.cluster.nodes:
            self.cluster.start_daemon(node)
        if self.template.farm:
            for node in self.cluster.nodes:
                self.cluster.safekit(node, "start", "-m", self.module)
        else:
            self.cluster.safekit("node1", "prim", "-m", self.module)
            self.cluster.safekit("node2", "second", "-m", self.module)
            # the first primary's application is started (initialised) before anything is measured
            self.cluster.wait_state("node1", self.module, "PRIM", timeout=240)
        self.settle(timeout=240)

    def members(self, node: str) -> list[str]:
        out = self.cluster.safekit(node, "farm", "map", "-m", self.module, "--json", check=False)
        if out.returncode != 0:
            return []
        data = json.loads(out.stdout)
        return sorted(data.get("members", [])) if not data.get("pending_here") else []

    def settle(self, timeout: float) -> None:
        """Both nodes back: secondary Ready under a Ready primary / both in the balancing set."""
        if self.template.farm:
            for node in self.cluster.nodes:
                self.cluster.wait_state(node, self.module, "UP", timeout=timeout)
            deadline = time.monotonic() + timeout
            while not all(self.members(n) == ["node1", "node2"] for n in self.cluster.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.module}: the balancing set is not both nodes after {timeout:g} s"
                    )
                time.sleep(0.3)
            return
        primary, secondary = self.serving()
        self.cluster.wait_state(primary, self.module, "PRIM", timeout=timeout)
        self.cluster.wait_state(secondary, self.module, "SECOND", timeout=timeout)

    def serving(self) -> tuple[str, str]:
        """(the node to cut, the survivor)."""
        if self.template.farm:
            # the node answering the client's own address (its share is the one cut off)
            vip = _vip(self.lab)
            script = (
                "import socket,sys;s=socket.create_connection((sys.argv[1],int(sys.argv[2])),5);"
                "s.sendall(b'GET /who HTTP/1.0\\r\\n\\r\\n');d=b''\n"
                "while (c:=s.recv(4096)): d+=c\n"
                "print(d.partition(b'\\r\\n\\r\\n')[2].decode().strip())"
            )
            who = self.lab.exec(
                "client", ["python3", "-c", script, vip, str(WEB_PORT)], check=True
            ).stdout.strip()
            if who not in self.cluster.nodes:
                raise RuntimeError(f"the farm answered {who!r}, not a node name")
            return who, next(n for n in self.cluster.nodes if n != who)
        for node in self.cluster.nodes:
            if self.cluster.state(node, self.module)["state"] in ("PRIM", "ALONE"):
                return node, next(n for n in self.cluster.nodes if n != node)
        raise RuntimeError(f"{self.module}: no primary")

    def one_run(self) -> tuple[float, float | None]:
        victim, survivor = self.serving()
        started = time.time()
        outage, kill_s, answered_at = power_cut_answer(
            self.lab, victim, self.template.probe(self.lab, survivor), 90
        )
        if outage <= 0:
            raise RuntimeError(f"an answer {-outage:.3f} s before the cut: the probe saw the serving node")
        log = self.cluster.log(survivor, self.module)
        marker = "buckets:" if self.template.farm else "running start_prim"
        # the first after the cut: the takeover's (a later one is a local restart of the application)
        times = log_times(log, marker, started)
        to_answer = answered_at - times[0] if times else None
        self.restarts.append(len(log_times(log, "asks restart", started)))
        self.kill_s.append(round(kill_s, 3))
        shown = "-" if to_answer is None else f"{to_answer:.3f} s"
        print(
            f"  {self.template.name}: cut {victim}, outage {outage:.3f} s, {marker} -> answer {shown}",
            flush=True,
        )
        self.lab.start(victim)
        self.template.boot(self.lab, victim)
        self.cluster.start_daemon(victim)
        self.settle(timeout=240)
        return outage, to_answer

    def down(self) -> None:
        self.lab.down()


def bench_module(template: Template, runs: int) -> dict[str, Any]:
    bench = ModuleBench(template)
    loads: list[float] = []
    try:
        bench.up()
        outages: list[float] = []
        to_answer: list[float | None] = []
        for _ in range(runs):
            loads.append(os.getloadavg()[0])
            outage, answer = bench.one_run()
            outages.append(outage)
            to_answer.append(answer)
        _, survivor = bench.serving()
        budget = daemon_budget(bench.cluster, survivor)
        return {
            "kind": "farm" if template.farm else "mirror",
            "cut": "the member serving the client's address" if template.farm else "the primary",
            "start_prim_to_answer_from": "buckets: line taking the share"
            if template.farm
            else "running start_prim",
            **module_row(outages, to_answer),
            "local_restarts_after_takeover": bench.restarts,
            "lab_kill_took_s": bench.kill_s,
            "loadavg_1m_during_runs": [round(x, 2) for x in loads],
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "budgets": {
                **budget,
                "node": survivor,
                "limits": {"safekitd_rss_mib": 80, "safekitd_idle_cpu_percent": 1.0},
            },
        }
    finally:
        bench.down()


def write_section(section: dict[str, Any]) -> Path:
    path = RESULTS / "modules.json"
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        existing = {"benchmark": "modules"}
    merged = merge_section(existing, section)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="power cuts per module (default 5, --quick 2)")
    parser.add_argument(
        "--quick", action="store_true", help="2 runs per module (a quick look, not the figure)"
    )
    parser.add_argument("--only", default="", help="comma-separated templates (default: all)")
    parser.add_argument("--table", action="store_true", help="print the results' table (Markdown) and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads((RESULTS / "modules.json").read_text(encoding="utf-8")).get(KEY, {})))
        return 0
    runs = args.runs or (2 if args.quick else 5)
    wanted = [t for t in args.only.split(",") if t] or list(ORDER)
    unknown = set(wanted) - set(ORDER)
    if unknown:
        parser.error(f"unknown templates: {sorted(unknown)}")
    failed = 0
    for name in wanted:
        section: dict[str, Any] = {
            "note": "outage: client-side, from the power cut of the serving node (the moment `lab kill` "
            "pulled its cables, as bench/failover.py counts it; lab_kill_took_s: how long lab kill waited "
            "for its lab's lock and worked) to the first answer through the VIP; start_prim_to_answer: "
            "from the survivor's log line (running start_prim; farms: the buckets line taking the lost "
            "share) to that answer. One lab per module; the machine is shared and loaded (each module "
            "records its load). Modules are measured one at a time: `modules` lists those measured so "
            "far, each with its date and mode.",
            "machine": machine(),
        }
        if name in SKIPPED or name not in TEMPLATES:
            reason = SKIPPED.get(name, NOT_DEPLOYED)
            print(f"{name}: skipped: {reason}", flush=True)
            write_section({**section, "skipped": {name: reason}})
            continue
        print(f"{name}: {runs} power cuts", flush=True)
        try:
            row = bench_module(TEMPLATES[name], runs)
        except Exception as error:  # the next module still runs; recorded
            failed += 1
            print(f"{name}: failed: {error}", flush=True)
            write_section({**section, "failed": {name: str(error)[:500]}})
            continue
        row["mode"] = "quick" if args.quick else "full"
        path = write_section({**section, "modules": {name: row}})
        print(f"{name}: outage p50 {row['outage_p50_s']} s -> {path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
