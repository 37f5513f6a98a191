"""The demo (`make demo`): a mirror cluster on lab hosts, deployed by the playbook, then a power cut.

1. a lab: node1, node2, a witness (the router the split-brain checker pings) and a client;
2. `ansible-playbook playbooks/deploy-mirror.yml`: cluster.xml, the cluster key, a web module with
   a virtual IP, safekitd on both nodes, `prim` on node1 and `second` on node2;
3. the client reads the page through the virtual IP: node1 serves it;
4. `safekit lab kill node1`: every process of node1 is killed and its cables pulled;
5. the client keeps asking; node2 takes over, and the outage is measured;
6. node1 boots again, the playbook runs again (nothing to change but starting safekitd), and
   node1 rejoins as secondary: its copy is older than node2's, so it never becomes primary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.prefix) / "bin"
LAB = sys.argv[1] if len(sys.argv) > 1 else "demo"
MODULE = "webmirror"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def playbook(lab: Lab) -> None:
    subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab.inventory_path), "playbooks/deploy-mirror.yml"],
        cwd=ROOT,
        check=True,
    )


def page(lab: Lab) -> str:
    url = f"http://{lab.plan().vips[0]}:8080/"
    code = (
        "import urllib.request\n"
        f"try: print(urllib.request.urlopen({url!r}, timeout=0.3).read().decode().strip())\n"
        "except Exception: print('(no answer)')"
    )
    return lab.exec("client", ["python3", "-c", code]).stdout.strip()


def states(cluster: LabCluster) -> None:
    for node in cluster.nodes:
        try:
            st = cluster.state(node, MODULE)
            print(f"   {node}: {st['state']} ({st['readiness']}) - {st['reason']}")
        except Exception as exc:  # a killed node cannot answer: say so and go on
            print(f"   {node}: no answer ({exc.__class__.__name__})")


def main() -> int:
    lab = Lab(LAB)
    say(f"lab '{LAB}': 2 nodes, a witness and a client (safekit lab up)")
    plan, created = lab.up(nodes=2, witness=True, client=True)
    for host in plan.hosts:
        print(f"   {host.name:<8} {host.address}")
    if not created:
        print("   (the lab was already up)")
    say("deploy the mirror module with Ansible (playbooks/deploy-mirror.yml)")
    playbook(lab)
    cluster = LabCluster(lab)
    say("the module on each node (safekit state)")
    states(cluster)
    primary = next(n for n in cluster.nodes if cluster.state(n, MODULE)["state"] in ("PRIM", "ALONE"))
    survivor = next(n for n in cluster.nodes if n != primary)
    vip = lab.plan().vips[0]
    say(f"the client reads http://{vip}:8080/ through the virtual IP")
    print(f"   {page(lab)}")

    say(f"power cut on {primary} (safekit lab kill {primary}): every process killed, cables pulled")
    killed = time.monotonic()
    lab.kill(primary)
    answer = ""
    while time.monotonic() - killed < 30:
        answer = page(lab)
        if survivor in answer:
            break
        time.sleep(0.05)
    outage = time.monotonic() - killed
    print(f"   the client gets '{answer}' {outage:.2f} s after the power cut")
    states(cluster)
    print(f"\n   {survivor}'s log of the takeover:")
    for line in cluster.log(survivor, MODULE).splitlines()[-8:]:
        print(f"   | {line}")

    say(f"{primary} boots again; the playbook runs again and starts safekitd there")
    lab.start(primary)
    playbook(lab)
    cluster.wait_state(primary, MODULE, "SECOND", timeout=60)
    states(cluster)
    print(f"\n   {page(lab)} (still through the virtual IP)")

    say("done")
    inventory = json.dumps(str(lab.inventory_path))
    print(
        f"   The lab '{LAB}' is still up. Look around:\n"
        f"     .venv/bin/safekit lab ssh --name {LAB} {survivor}\n"
        f"     .venv/bin/safekit lab exec --name {LAB} {survivor} -- /opt/safekit/venv/bin/safekit state -v\n"
        f"     ansible -i {inventory} safekit_nodes -m ping\n"
        f"   Remove it with: make lab-down LAB={LAB}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
