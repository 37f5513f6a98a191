"""Where safekitd finds its configuration and keeps its state, logs and socket.

SafeKit's layout, kept so its users find their way: the installation and modules under SAFE
(`/opt/safekit`, a module being `modules/AM/{conf,bin}`), state under SAFEVAR (`/var/safekit`);
cluster-wide files (cluster.xml, the cluster key) under `/etc/safekit`. Each can be moved with an
environment variable of the same name (tests and several daemons on one machine use that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    safe: Path = Path("/opt/safekit")
    conf: Path = Path("/etc/safekit")
    var: Path = Path("/var/safekit")
    log: Path = Path("/var/log/safekit")
    run: Path = Path("/run/safekit")

    @classmethod
    def from_env(cls) -> Paths:
        env = os.environ
        return cls(
            safe=Path(env.get("SAFE", "/opt/safekit")),
            conf=Path(env.get("SAFEKIT_CONF", "/etc/safekit")),
            var=Path(env.get("SAFEVAR", "/var/safekit")),
            log=Path(env.get("SAFEKIT_LOG", "/var/log/safekit")),
            run=Path(env.get("SAFEKIT_RUN", "/run/safekit")),
        )

    @property
    def cluster_xml(self) -> Path:
        return self.conf / "cluster.xml"

    @property
    def cluster_key(self) -> Path:
        return self.conf / "cluster.key"

    @property
    def modules(self) -> Path:
        return self.safe / "modules"

    @property
    def socket(self) -> Path:
        return self.run / "safekitd.sock"

    @property
    def daemon_log(self) -> Path:
        return self.log / "safekitd.log"

    def module_dir(self, module: str) -> Path:
        return self.modules / module

    def module_var(self, module: str) -> Path:
        return self.var / "modules" / module

    def boot_file(self, module: str) -> Path:
        """`{"start_at_boot": bool}`: what `boot="auto"` follows (`safekit boot on|off`, start, stop)."""
        return self.module_var(module) / "boot.json"

    def module_log(self, module: str) -> Path:
        return self.log / "modules" / f"{module}.log"

    def user_log(self, module: str) -> Path:
        return self.log / "modules" / f"{module}.userlog"

    def module_journal(self, module: str) -> Path:
        """What `safekit report` reads (daemon/module_journal.py)."""
        return self.log / "modules" / f"{module}.journal"
