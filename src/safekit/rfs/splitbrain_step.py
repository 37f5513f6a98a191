"""The split-brain steps of a secondary (ARCHITECTURE.md rule 4), run as children of the native
secondary (docs/adr/0023-native-secondary-binds-and-splitbrain.md):

    python -m safekit.rfs splitbrain-save SPEC.json
        the save recorded in secondary.json as {"phase": "saving", ...}: what this node changed since
        the split copied aside (`splitbrain.save`; a save whose manifest was written before a crash is
        not redone), the journal forgotten; prints the `splitbrain` event line (exactly
        `channel.encode_event`'s bytes) on stdout, exit 0. The caller then records phase "saved" and
        sends that line to safekitd. Exit 2 with the reason on stdout: it could not save (an OSError:
        no space...), the resynchronisation must wait. Exit 3: interrupted (SIGTERM), done again at
        the next start.
    python -m safekit.rfs splitbrain-annotate SPEC.json DIR
        after the resynchronisation: the save's manifest completed with what the winner has.

Policy stays here (which files, the space rule, the manifest, the report); the children only read the
copy, through the directories' paths (a read-only bind over them is fine).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from safekit.host import persist
from safekit.rfs import channel, splitbrain
from safekit.rfs.logsetup import setup
from safekit.rfs.spec import RfsSpec

log = logging.getLogger("safekit.rfs.splitbrain_step")

EXIT_SAVED = 0
EXIT_FAILED = 2
EXIT_INTERRUPTED = 3


def keep_free(rfs: RfsSpec) -> splitbrain.KeepFree:
    """How much of the saves' file system must stay free (`extra["splitbrain_keep_free"]`)."""
    text = str(rfs.extra.get("splitbrain_keep_free") or splitbrain.DEFAULT_KEEP_FREE)
    try:
        return splitbrain.KeepFree.parse(text)
    except ValueError as exc:
        log.error("%s: using %s", exc, splitbrain.DEFAULT_KEEP_FREE)
        return splitbrain.KeepFree.parse(splitbrain.DEFAULT_KEEP_FREE)


def replicated(rfs: RfsSpec, dir_fds: list[int]) -> list[splitbrain.Replicated]:
    return [
        splitbrain.Replicated(d.path, fd, d.exclusions()) for d, fd in zip(rfs.dirs, dir_fds, strict=True)
    ]


def context(rfs: RfsSpec, pending: dict[str, Any]) -> splitbrain.Context:
    return splitbrain.Context(
        rfs.module,
        rfs.node,
        str(pending.get("peer") or rfs.peer),
        pending.get("generation"),
        pending.get("peer_generation"),
        pending.get("split_at"),
    )


def failure(rfs: RfsSpec, ctx: splitbrain.Context, target: Path, exc: OSError) -> str:
    """Why the process ends when the save cannot be made (printed for the native secondary)."""
    return (
        f"split brain: could not save what {rfs.node} changed since the split under "
        f"{target} ({exc}): the resynchronisation from {ctx.peer} waits until it can "
        "(free space on that file system)"
    )


def saved_event(manifest: dict[str, Any], target: Path) -> channel.SplitBrainSaved:
    """The save's report: logged (summary and details), and the event for safekitd."""
    log.warning("%s", splitbrain.summary_line(manifest, target))
    for line in splitbrain.detail_lines(manifest):
        log.warning("%s", line)
    totals = manifest["totals"]
    return channel.SplitBrainSaved(
        path=str(target),
        files=int(totals["files"]),
        bytes=int(totals["bytes"]),
        not_saved=int(totals["not_saved"]),
        deleted=int(totals["deleted"]),
        since=manifest.get("since"),
        winner=manifest.get("winner"),
    )


def _open_dirs(rfs: RfsSpec) -> list[int]:
    return [os.open(d.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for d in rfs.dirs]


def _pending(rfs: RfsSpec) -> dict[str, Any] | None:
    try:
        obj = json.loads((Path(rfs.state_dir) / "secondary.json").read_text())
    except (OSError, ValueError):
        return None
    pending = obj.get("splitbrain") if isinstance(obj, dict) else None
    return pending if isinstance(pending, dict) and pending.get("phase") == "saving" else None


def save_main(spec_path: str) -> int:
    rfs = RfsSpec.load(spec_path)
    _log_setup(rfs)
    pending = _pending(rfs)
    if pending is None or not pending.get("dir"):
        _print(f"split brain: no pending save in {Path(rfs.state_dir) / 'secondary.json'}\n")
        return EXIT_FAILED
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    target = Path(str(pending["dir"]))
    ctx = context(rfs, pending)
    journal_file = Path(rfs.state_dir) / "journal.json"
    fds: list[int] = []
    try:
        fds = _open_dirs(rfs)
        manifest = splitbrain.read_manifest(target)  # saved before a crash: never redone over
        if manifest is None:
            started = time.monotonic()
            manifest = splitbrain.save(
                ctx,
                replicated(rfs, fds),
                splitbrain.load_journal(journal_file),
                target,
                keep=keep_free(rfs),
                should_stop=lambda: stopping,
            )
            log.info("split brain: save took %.2f s", time.monotonic() - started)
        splitbrain.forget_journal(journal_file, persist.write_bytes)
    except splitbrain.Interrupted:
        return EXIT_INTERRUPTED
    except OSError as exc:
        _print(failure(rfs, ctx, target, exc) + "\n")
        return EXIT_FAILED
    finally:
        for fd in fds:
            os.close(fd)
    sys.stdout.buffer.write(channel.encode_event(saved_event(manifest, target)))
    sys.stdout.flush()
    return EXIT_SAVED


def annotate_main(spec_path: str, target_dir: str) -> int:
    rfs = RfsSpec.load(spec_path)
    _log_setup(rfs)
    target = Path(target_dir)
    fds: list[int] = []
    try:
        fds = _open_dirs(rfs)
        manifest = splitbrain.annotate(
            target, replicated(rfs, fds), finished_at=datetime.now(UTC).timestamp()
        )
    except (OSError, ValueError) as exc:
        log.warning("split brain: could not complete %s/%s: %s", target, splitbrain.MANIFEST, exc)
        return 1
    finally:
        for fd in fds:
            os.close(fd)
    if manifest is not None:
        log_annotated(manifest, target)
    return 0


def log_annotated(manifest: dict[str, Any], target: Path) -> None:
    counts = manifest["resync"]["on_winner"]
    log.info(
        "split brain: %s/%s completed with what %s has: %s",
        target,
        splitbrain.MANIFEST,
        manifest.get("winner"),
        ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "nothing",
    )


def _print(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _log_setup(rfs: RfsSpec) -> None:
    setup(rfs, "secondary")
