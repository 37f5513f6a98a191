"""Where the API keeps its files: certificates, users and tokens under /etc/safekit/api, the audit
log beside the daemon's log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safekit.host.paths import Paths

DEFAULT_PORT = 9453


@dataclass(frozen=True)
class ApiFiles:
    directory: Path
    audit_log: Path

    @classmethod
    def from_paths(cls, paths: Paths) -> ApiFiles:
        return cls(directory=paths.conf / "api", audit_log=paths.log / "audit.log")

    @property
    def ca_cert(self) -> Path:
        """The cluster CA (derived from the cluster key; the same on every node)."""
        return self.directory / "ca.crt"

    @property
    def node_cert(self) -> Path:
        return self.directory / "node.crt"

    @property
    def node_key(self) -> Path:
        return self.directory / "node.key"

    @property
    def user_cert(self) -> Path:
        """The operator's own certificate (with its chain); used instead of node.crt when present."""
        return self.directory / "tls.crt"

    @property
    def user_key(self) -> Path:
        return self.directory / "tls.key"

    @property
    def trust(self) -> Path:
        """What `safekit -H` trusts: trust.pem when the operator supplies one, else the cluster CA."""
        custom = self.directory / "trust.pem"
        return custom if custom.is_file() else self.ca_cert

    @property
    def users(self) -> Path:
        return self.directory / "users.json"

    @property
    def tokens(self) -> Path:
        return self.directory / "tokens.json"

    def server_pair(self) -> tuple[Path, Path]:
        if self.user_cert.is_file() and self.user_key.is_file():
            return self.user_cert, self.user_key
        return self.node_cert, self.node_key
