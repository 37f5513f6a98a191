# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""The base of the safekit.ha modules: AnsibleModule plus the engine on the node.

Every module talks to the engine the way an operator does, through its command line
(`<engine_bin>/safekit ... --json`); a failure becomes `fail_json(msg=...)` with the engine's own
one-line error. Files are written only when their content or mode differs, atomically, never in
check mode, and their before/after goes to the diff (except secrets). The node's paths follow the
engine's environment variables (`SAFE`, `SAFEKIT_CONF`), so a task's `environment:` moves both.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped, unused-ignore]

DEFAULT_ENGINE_BIN = "/opt/safekit/venv/bin"
ENGINE_ARGUMENT_SPEC: dict[str, Any] = {"engine_bin": {"type": "path", "default": DEFAULT_ENGINE_BIN}}


class SafekitModule:
    """One task on one node: parameters, the engine's CLI, files, and the result being built."""

    def __init__(self, argument_spec: dict[str, Any], engine: bool = True, **kwargs: Any) -> None:
        spec = dict(ENGINE_ARGUMENT_SPEC) if engine else {}
        spec.update(argument_spec)
        self.module = AnsibleModule(argument_spec=spec, **kwargs)
        self.params: dict[str, Any] = self.module.params
        self.check_mode: bool = self.module.check_mode
        self.diffs: list[dict[str, str]] = []
        self.result: dict[str, Any] = {"changed": False}
        self.conf_dir = os.environ.get("SAFEKIT_CONF", "/etc/safekit")
        self.safe_dir = os.environ.get("SAFE", "/opt/safekit")

    # ------------------------------------------------------------------------------- the engine
    @property
    def engine_path(self) -> str:
        return os.path.join(self.params.get("engine_bin") or DEFAULT_ENGINE_BIN, "safekit")

    def engine_installed(self) -> bool:
        return os.access(self.engine_path, os.X_OK)

    def run_engine(self, *args: str) -> tuple[int, str, str]:
        """Run `safekit ARGS`; (rc, stdout, stderr), rc 127 when the engine is not installed."""
        if not self.engine_installed():
            return (
                127,
                "",
                f"the engine is not installed: no {self.engine_path} (run safekit.ha.engine first)",
            )
        rc, out, err = self.module.run_command([self.engine_path, *args], environ_update={"LC_ALL": "C"})
        return rc, out, err

    def engine(self, *args: str) -> dict[str, Any]:
        """`safekit ARGS --json`, its answer; a refusal fails the task with the engine's message."""
        rc, out, err = self.run_engine(*args, "--json")
        if rc != 0:
            self.fail(one_line(err, f"safekit {args[0]}: exit code {rc}"))
        try:
            answer = json.loads(out) if out.strip() else {}
        except ValueError:
            self.fail("safekit {}: the answer is not JSON: {}".format(" ".join(args), out[:200]))
        return answer if isinstance(answer, dict) else {"answer": answer}

    def states(self, verbose: bool = False) -> list[dict[str, Any]] | None:
        """Every module as safekitd sees it (`safekit state --json`); None when safekitd does not run."""
        rc, out, _err = self.run_engine("state", *(["-v"] if verbose else []), "--json")
        if rc != 0:
            return None
        try:
            return list(json.loads(out).get("modules", []))
        except ValueError:
            return None

    def module_state(self, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(safekitd runs, the module's entry or None when safekitd does not know it)."""
        modules = self.states()
        if modules is None:
            return False, None
        return True, next((m for m in modules if m.get("name") == name), None)

    def check_config(self, text: str, filename: str, destination: str) -> None:
        """Validate a cluster.xml or userconfig.xml with the engine's validator before anything is written."""
        if not self.engine_installed() and self.check_mode:
            self.module.warn(
                f"{destination} not validated: the engine is not installed yet ({self.engine_path})"
            )
            return
        workdir = tempfile.mkdtemp(prefix="safekit-check-", dir=self.module.tmpdir)
        try:
            path = os.path.join(workdir, filename)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            rc, _out, err = self.run_engine("config", "check", path)
            for line in err.splitlines():
                if line.startswith("warning:"):
                    self.module.warn(line.replace(path, destination))
            if rc != 0:
                problems = [
                    line.replace(path, destination) for line in err.splitlines() if line.startswith("error:")
                ]
                self.fail(
                    "{} is not valid (nothing was changed): {}".format(
                        destination,
                        "; ".join(problems) or one_line(err, f"exit code {rc}").replace(path, destination),
                    )
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # ---------------------------------------------------------------------------------- files
    def ensure_file(self, path: str, content: str, mode: int, secret: bool = False) -> bool:
        """Make `path` hold `content` with `mode`; True when it did (or would, in check mode)."""
        before = _read(path)
        current_mode = _mode(path)
        if before == content and current_mode == mode:
            return False
        if not secret:
            self.diffs.append(
                {"before_header": path, "after_header": path, "before": before or "", "after": content}
            )
        elif before != content:
            self.diffs.append(
                {
                    "before_header": path,
                    "after_header": path,
                    "before": "(secret)\n" if before is not None else "",
                    "after": "(secret, changed)\n",
                }
            )
        if not self.check_mode:
            directory = os.path.dirname(path)
            os.makedirs(directory, mode=0o755, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
            try:
                os.fchmod(fd, mode)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(content)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, path)
            except BaseException:
                if os.path.exists(temp):
                    os.unlink(temp)
                raise
        return True

    def remove_tree(self, path: str) -> bool:
        if not os.path.lexists(path):
            return False
        self.diffs.append(
            {"before_header": path, "after_header": path, "before": "(present)\n", "after": "(absent)\n"}
        )
        if not self.check_mode:
            shutil.rmtree(path)
        return True

    # ---------------------------------------------------------------------------------- results
    def fail(self, msg: str, **extra: Any) -> None:
        self.module.fail_json(msg=msg, **extra)

    def exit(self, **extra: Any) -> None:
        self.result.update(extra)
        if self.module._diff and self.diffs:
            self.result["diff"] = self.diffs
        self.module.exit_json(**self.result)


def one_line(stderr: str, default: str) -> str:
    """The engine's error: its last non-empty line on stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else default


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None
