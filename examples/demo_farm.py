"""The farm demo (`make demo-farm`): three lab nodes running Debian's nginx behind one virtual IP.

1. a lab: node1, node2, node3 and a client;
2. a farm module on every node: start_both runs nginx (its own configuration under /srv/nginx,
   a page that names the node), the VIP is shared by the three nodes with a virtual MAC, and each
   node's kernel (nftables) answers only the connections whose hash bucket it owns;
3. the client opens many connections, from several source addresses: every node answers its share;
4. `safekit lab kill node2`: power cut; node1 and node3 take node2's buckets; the client keeps going;
5. node2 boots again and rejoins: the map is back to three shares.
The lab stays up to look around; `.venv/bin/safekit lab down --name farmdemo` removes it.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from safekit.lab import Lab
from safekit.lab.cluster import LabCluster
from safekit.membership import clusterkey

LAB = sys.argv[1] if len(sys.argv) > 1 else "farmdemo"
MODULE = "webfarm"
NODES = ("node1", "node2", "node3")

USERCONFIG = """<!DOCTYPE safe>
<safe>
<service mode="farm" boot="auto">
  <farm><lan name="default"/></farm>
  <vip>
    <interface_list><interface>
      <virtual_interface type="vmac_invisible"><virtual_addr addr="{vip}" where="alias"/></virtual_interface>
    </interface></interface_list>
    <loadbalancing_list><group name="web">
      <cluster>{hosts}</cluster>
      <rule virtual_addr="*" port="80" proto="tcp" filter="on_port"/>
    </group></loadbalancing_list>
  </vip>
  <user nicestoptimeout="10s" forcestoptimeout="10s"/>
  <errd polltimer="2s">
    <proc name="nginx" atleast="1" action="restart" class="both"/>
  </errd>
</service>
</safe>
"""

NGINX_CONF = """user www-data;
worker_processes 1;
pid /run/nginx-farm.pid;
error_log /srv/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path /srv/nginx/tmp/body;
    proxy_temp_path /srv/nginx/tmp/proxy;
    fastcgi_temp_path /srv/nginx/tmp/fastcgi;
    uwsgi_temp_path /srv/nginx/tmp/uwsgi;
    scgi_temp_path /srv/nginx/tmp/scgi;
    server {
        listen 80 reuseport;
        root /srv/www;
        location / { default_type text/plain; }
    }
}
"""

START_BOTH = f"""#!/bin/sh
# Each node has its own /srv: a page naming the node, and nginx's own configuration.
mkdir -p /srv/www /srv/nginx/tmp
hostname > /srv/www/index.html
chmod -R a+rX /srv/www
cat > /srv/nginx/nginx.conf <<'CONF'
{NGINX_CONF}CONF
exec /usr/sbin/nginx -c /srv/nginx/nginx.conf
"""

STOP_BOTH = """#!/bin/sh
[ -f /run/nginx-farm.pid ] && /usr/sbin/nginx -c /srv/nginx/nginx.conf -s quit
for i in $(seq 50); do [ -f /run/nginx-farm.pid ] || exit 0; sleep 0.1; done
exit 0
"""

PROBE = r"""
import json, socket, sys
vip, count, sources = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
answers, failures = {}, 0
for i in range(count):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.bind((sources[i % len(sources)], 0))
        s.connect((vip, 80))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        who = data.split(b"\r\n\r\n", 1)[1].decode().strip()
        answers[who] = answers.get(who, 0) + 1
    except OSError:
        failures += 1
    finally:
        s.close()
print(json.dumps({"answers": answers, "failures": failures}))
"""


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def probe(lab: Lab, vip: str, sources: list[str], count: int = 150) -> dict[str, object]:
    out = lab.exec("client", ["python3", "-c", PROBE, vip, str(count), ",".join(sources)], check=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def show(result: dict[str, object]) -> None:
    answers = result["answers"]
    assert isinstance(answers, dict)
    spread = ", ".join(f"{node}: {n}" for node, n in sorted(answers.items()))
    print(f"   {sum(answers.values())} answered ({spread}), {result['failures']} failed")


def wait_members(cluster: LabCluster, node: str, members: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = json.loads(cluster.safekit(node, "farm", "map", "-m", MODULE, "--json").stdout)
        if data["members"] == members and not data["pending_here"]:
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: the farm did not settle on {members} within {timeout:g} s")


def main() -> int:
    lab = Lab(LAB)
    say(f"lab {LAB}: three nodes and a client")
    _, created = lab.up(nodes=3, client=True)
    if not created:
        print("   (the lab was already up)")
    plan = lab.plan()
    vip = str(plan.vips[0])
    for host in plan.hosts:
        print(f"   {host.name:<8} {host.address}")

    say(f"farm module {MODULE}: nginx on every node, virtual IP {vip} shared by all three")
    staging = Path(tempfile.mkdtemp(prefix="safekit-farmdemo-", dir="/var/tmp"))
    try:
        path = staging / MODULE
        (path / "conf").mkdir(parents=True)
        (path / "bin").mkdir()
        hosts = "".join(f'<host name="{n}" power="1"/>' for n in NODES)
        (path / "conf" / "userconfig.xml").write_text(USERCONFIG.format(vip=vip, hosts=hosts))
        for name, body in (("start_both", START_BOTH), ("stop_both", STOP_BOTH)):
            (path / "bin" / name).write_text(body)
            (path / "bin" / name).chmod(0o755)
        staging.chmod(0o755)
        cluster = LabCluster(lab, NODES)
        cluster.install(path, key=clusterkey.generate_key())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for node in NODES:
        if cluster.daemon_pid(node) is None:
            cluster.start_daemon(node)
        cluster.safekit(node, "start", "-m", MODULE, check=False)
    for node in NODES:
        cluster.wait_state(node, MODULE, "UP", timeout=60)
    wait_members(cluster, "node1", list(NODES))
    print(cluster.safekit("node1", "farm", "map", "-m", MODULE).stdout.rstrip())

    network = plan.lans[0].network
    sources = [str(network[150 + i]) for i in range(4)]
    have = lab.exec("client", ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    for address in sources:
        if f" {address}/" not in have:
            lab.exec("client", ["ip", "addr", "add", f"{address}/24", "dev", "eth0"], check=True)
    say(f"the client opens 150 connections to http://{vip}/ from {len(sources) + 1} addresses")
    show(probe(lab, vip, [str(plan.host("client").address), *sources]))

    say("power cut of node2 (safekit lab kill node2)")
    killed = time.monotonic()
    lab.kill("node2")
    wait_members(cluster, "node1", ["node1", "node3"])
    print(f"   node1 and node3 serve node2's buckets {time.monotonic() - killed:.2f} s after the cut")
    show(probe(lab, vip, sources))

    say("node2 boots again, safekitd starts the module (boot=auto), the map rebalances")
    lab.start("node2")
    cluster.start_daemon("node2")
    cluster.wait_state("node2", MODULE, "UP", timeout=60)
    wait_members(cluster, "node1", list(NODES))
    show(probe(lab, vip, sources))
    print(
        f"\nThe lab stays up: .venv/bin/safekit lab exec --name {LAB} node1 -- safekit farm map -m {MODULE}\n"
        f"                  .venv/bin/safekit lab down --name {LAB}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
