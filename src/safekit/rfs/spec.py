"""What safekitd tells a replication process: the spec file (JSON), read by the native programs
and by the split-brain steps (`rfs.splitbrain_step`). How they talk is `rfs.channel`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from safekit.rfs.tree import Exclusions


@dataclass(frozen=True)
class DirSpec:
    path: str
    notreplicated: tuple[str, ...] = ()
    notreplicated_regex: tuple[str, ...] = ()

    def exclusions(self) -> Exclusions:
        return Exclusions.build(list(self.notreplicated), list(self.notreplicated_regex))


@dataclass(frozen=True)
class RfsSpec:
    module: str
    node: str
    peer: str
    dirs: tuple[DirSpec, ...]
    local_addr: str
    peer_addr: str
    port: int
    key_file: str
    state_dir: str
    async_mode: Literal["second", "none"] = "second"
    sendtimeout: float = 30.0
    connect_interval: float = 1.0
    window_bytes: int = 64 << 20
    """Bytes sent and not yet applied by the secondary before writers wait (memory bound)."""
    writeback: bool = False
    """The kernel's writeback cache on the native primary's FUSE front (`<rfs writeback="on">`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RfsSpec:
        obj = json.loads(text)
        obj["dirs"] = tuple(
            DirSpec(d["path"], tuple(d.get("notreplicated", ())), tuple(d.get("notreplicated_regex", ())))
            for d in obj["dirs"]
        )
        return cls(**obj)

    @classmethod
    def load(cls, path: str | Path) -> RfsSpec:
        return cls.from_json(Path(path).read_text())
