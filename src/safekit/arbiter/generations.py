"""The arbiter's one durable memory: the highest copy rank granted per (cluster, module).

Leases live in memory only (a restart's grace period covers them), but the ranks must survive a
restart: a restarted arbiter that forgot them would lease a module to a node whose copy is older
than the one a node served alone with (lost acknowledged writes). This module owns the state file
`generations.json` in the state directory (default /var/lib/safekit-arbiter, mode 0700):

    {"format": "safekit-arbiter-generations", "version": 2,
     "clusters": {"<cluster id, 16 hex digits>":
                  {"<module>": {"generation": <g>, "confirmed": <c>}, ...}, ...}}

A rank is (confirmed, generation), docs/adr/0046. Version 1 files (written before confirmed
generations: `"<module>": <generation>`) are read as (generation, generation), what the arbiter
then compared; the next write is version 2.

It is written with write-to-temp + fsync + rename + fsync of the directory, only when a generation
rises (once per failover or split). A file that cannot be read or parsed is an operator decision:
`load` raises `GenerationStateError` naming the file, and the arbiter does not start unless told
to forget (`--reset-generations`, which weakens the guarantee until every module's primary has
renewed its lease once).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from safekit.arbiter.keys import CLUSTER_ID_SIZE
from safekit.arbiter.leases import check_rank
from safekit.config.attributes import NAME_PATTERN
from safekit.membership.wire import MAX_NAME_BYTES
from safekit.mirror.states import ReplicaRank

DEFAULT_STATE_DIR = Path("/var/lib/safekit-arbiter")
STATE_FILE = "generations.json"
_FORMAT = "safekit-arbiter-generations"
_VERSION = 2
_READS = (1, 2)
_CLUSTER_HEX = re.compile(rf"[0-9a-f]{{{2 * CLUSTER_ID_SIZE}}}")

Generations = Mapping[tuple[bytes, str], ReplicaRank]


class GenerationStateError(Exception):
    """The state file cannot be trusted or written; the message names it and says what to do."""


class GenerationStore:
    """The generations file in `state_dir` (created with mode 0700 if missing)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATE_FILE

    def prepare(self) -> None:
        """Create the state directory (0700) if it is missing."""
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise GenerationStateError(
                f"{self.state_dir}: cannot create the state directory: {exc.strerror}"
            ) from None
        if not self.state_dir.is_dir():
            raise GenerationStateError(f"{self.state_dir}: not a directory (--state-dir)")

    def load(self) -> dict[tuple[bytes, str], ReplicaRank]:
        """The generations recorded; empty when the file does not exist yet (a first start)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise GenerationStateError(self._refusal(f"cannot be read: {reason}")) from None
        try:
            return parse(text)
        except ValueError as exc:
            raise GenerationStateError(self._refusal(f"is corrupt: {exc}")) from None

    def save(self, generations: Generations) -> None:
        """Replace the file atomically and durably with `generations`."""
        text = render(generations)
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise GenerationStateError(
                f"{self.path}: cannot write the replica generations: {exc.strerror}"
            ) from None

    def _refusal(self, what: str) -> str:
        return (
            f"{self.path} {what}. The arbiter refuses to start: without it, it could lease a module to "
            "a node whose copy is older than one that served alone. Repair or restore the file, or "
            "start once with --reset-generations to forget every generation (weaker: see docs/arbiter.md)"
        )


def render(generations: Generations) -> str:
    clusters: dict[str, dict[str, dict[str, int]]] = {}
    for (cluster, module), rank in sorted(generations.items()):
        if rank.generation > 0:
            entry = {"generation": rank.generation, "confirmed": rank.confirmed}
            clusters.setdefault(cluster.hex(), {})[module] = entry
    document = {"format": _FORMAT, "version": _VERSION, "clusters": clusters}
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def parse(text: str) -> dict[tuple[bytes, str], ReplicaRank]:
    """The ranks in a state file's text; ValueError saying what is wrong."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError(f"not a {_FORMAT} document")
    version = document.get("version")
    if version not in _READS:
        raise ValueError(f"format version {version!r}; this arbiter reads versions 1 and {_VERSION}")
    clusters = document.get("clusters")
    if not isinstance(clusters, dict):
        raise ValueError("'clusters' is not an object")
    result: dict[tuple[bytes, str], ReplicaRank] = {}
    for cluster_hex, modules in clusters.items():
        if not _CLUSTER_HEX.fullmatch(cluster_hex):
            raise ValueError(f"{cluster_hex[:40]!r} is not a cluster id")
        if not isinstance(modules, dict):
            raise ValueError(f"cluster {cluster_hex}: not an object")
        for module, generation in modules.items():
            if not (
                1 <= len(module) <= MAX_NAME_BYTES and module.isascii() and NAME_PATTERN.fullmatch(module)
            ):
                raise ValueError(f"cluster {cluster_hex}: {module[:40]!r} is not a module name")
            rank = _rank(generation, version)
            if rank is None:
                raise ValueError(
                    f"cluster {cluster_hex} module {module}: generation {generation!r} out of range"
                )
            result[(bytes.fromhex(cluster_hex), module)] = rank
    return result


def _rank(entry: object, version: object) -> ReplicaRank | None:
    """A module's entry as a rank (a bare number in version 1), or None if it is not one."""
    if version == 1:
        pair: tuple[object, object] = (entry, entry)
    elif isinstance(entry, dict) and set(entry) == {"generation", "confirmed"}:
        pair = (entry["confirmed"], entry["generation"])
    else:
        return None
    try:
        check_rank(pair)
    except ValueError:
        return None
    confirmed, generation = pair
    assert isinstance(confirmed, int) and isinstance(generation, int)
    return ReplicaRank(confirmed, generation)
