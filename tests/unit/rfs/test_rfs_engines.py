"""The replication engine of a module and the native programs' lookup (safekit.rfs.native, ADR 0024),
and safekitd starting a native program through the supervisor (a stand-in program, no FUSE)."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from safekit.chaos.procstats import role_of
from safekit.config import ConfigError, parse_module
from safekit.daemon import rfs_supervisor
from safekit.daemon.mirror_replication import ModuleReplication
from safekit.mirror import MirrorSettings, ReplicationRole, StartReplication
from safekit.mirror.events import ActionFailed
from safekit.rfs import channel, native
from safekit.rfs.spec import DirSpec, RfsSpec

MODULE = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <rfs{attribute}><replicated dir="/srv/data"/></rfs>
</service>
</safe>
"""


def spec(tmp_path: Path, *dirs: str) -> RfsSpec:
    return RfsSpec(
        module="m",
        node="node1",
        peer="node2",
        dirs=tuple(DirSpec(d) for d in (dirs or (str(tmp_path / "data"),))),
        local_addr="127.0.0.1",
        peer_addr="127.0.0.1",
        port=0,
        key_file=str(tmp_path / "key"),
        state_dir=str(tmp_path / "state"),
    )


def program(directory: Path, name: str, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body)
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------- the setting
@pytest.mark.parametrize(
    ("attribute", "engine"), [("", None), (' engine="native"', "native"), (' engine="python"', "python")]
)
def test_rfs_engine_attribute_is_read(attribute: str, engine: str | None) -> None:
    module, warnings = parse_module(MODULE.format(attribute=attribute), "userconfig.xml", env={})
    assert module.rfs is not None and module.rfs.engine == engine and warnings == ()


def test_an_unknown_engine_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_module(MODULE.format(attribute=' engine="rust"'), "userconfig.xml", env={})
    assert [str(e) for e in caught.value.errors] == [
        "userconfig.xml:5: <rfs>: attribute 'engine': 'rust' is not allowed (use one of: python, native)"
    ]


def test_the_module_setting_wins_then_safekitds_environment_then_native() -> None:
    assert native.choose_engine(None, {}) == "native"
    assert native.choose_engine(None, {"SAFEKIT_RFS_ENGINE": ""}) == "native"
    assert native.choose_engine(None, {"SAFEKIT_RFS_ENGINE": "python"}) == "python"
    assert native.choose_engine(None, {"SAFEKIT_RFS_ENGINE": "native"}) == "native"
    assert native.choose_engine(None, {"SAFEKIT_RFS_ENGINE": " Native "}) == "native"
    assert native.choose_engine("python", {"SAFEKIT_RFS_ENGINE": "native"}) == "python"
    assert native.choose_engine("native", {}) == "native"
    with pytest.raises(native.EngineError, match=r"SAFEKIT_RFS_ENGINE='c': give python or native"):
        native.choose_engine(None, {"SAFEKIT_RFS_ENGINE": "c"})


# ---------------------------------------------------------------------------- the lookup
def test_the_wheels_programs_come_before_the_checkouts(tmp_path: Path) -> None:
    package, checkout = tmp_path / "package", tmp_path / "checkout"
    program(checkout, "safekit-rfs-primary")
    assert native.find_program("primary", {}, package, checkout) == checkout / "safekit-rfs-primary"
    program(package, "safekit-rfs-primary")
    assert native.find_program("primary", {}, package, checkout) == package / "safekit-rfs-primary"


def test_the_environment_override_is_the_only_place_looked_at(tmp_path: Path) -> None:
    package, override = tmp_path / "package", tmp_path / "override"
    program(package, "safekit-rfs-secondary")
    env = {"SAFEKIT_RFS_NATIVE_DIR": str(override)}
    with pytest.raises(native.EngineError) as caught:
        native.find_program("secondary", env, package, tmp_path / "none")
    assert str(caught.value) == (
        f"the native replication program safekit-rfs-secondary (secondary) is not in {override}: "
        "put it there or unset SAFEKIT_RFS_NATIVE_DIR"
    )
    program(override, "safekit-rfs-secondary")
    assert native.find_program("secondary", env, package) == override / "safekit-rfs-secondary"


def test_a_missing_program_names_every_place_and_the_way_out(tmp_path: Path) -> None:
    package, checkout = tmp_path / "package", tmp_path / "checkout"
    (checkout).mkdir()
    (checkout / "safekit-rfs-primary").write_text("not executable")  # a file that cannot run
    with pytest.raises(native.EngineError) as caught:
        native.find_program("primary", {}, package, checkout)
    message = str(caught.value)
    assert message.startswith(
        f"the native replication program safekit-rfs-primary (primary) is not in {package}, {checkout}: "
    )
    assert "make -C native" in message and "SAFEKIT_RFS_NATIVE_DIR" in message


def test_the_checkout_build_directory_is_this_repositorys() -> None:
    root = native.CHECKOUT_BUILD.parents[1]  # the checkout these tests run from
    assert native.CHECKOUT_BUILD.name == "build" and (root / "native" / "Makefile").is_file()
    assert (root / "src" / "safekit" / "rfs" / "native.py").samefile(native.__file__)


# ---------------------------------------------------------------------------- command lines
def test_command_lines_of_both_engines(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    primary, secondary = program(bin_dir, "safekit-rfs-primary"), program(bin_dir, "safekit-rfs-secondary")
    env = {"SAFEKIT_RFS_NATIVE_DIR": str(bin_dir)}
    one = spec(tmp_path, "/srv/data")
    spec_file = tmp_path / "primary.spec.json"
    python = native.launch("python", "primary", one, spec_file, env, python="/venv/bin/python")
    assert python.argv == ("/venv/bin/python", "-m", "safekit.rfs", "primary", str(spec_file))
    assert python.env == {"PYTHONUNBUFFERED": "1"}
    # the native primary serves the directories in place, one or several, as the Python one does
    assert native.launch("native", "primary", one, spec_file, env).argv == (str(primary), str(spec_file))
    two = spec(tmp_path, "/srv/a", "/srv/b")
    assert native.launch("native", "primary", two, spec_file, env).argv == (str(primary), str(spec_file))
    assert native.launch("native", "secondary", one, spec_file, env).argv == (str(secondary), str(spec_file))
    with pytest.raises(native.EngineError, match="safekit-rfs-primary"):
        native.launch("native", "primary", one, spec_file, {"SAFEKIT_RFS_NATIVE_DIR": str(tmp_path / "none")})


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/v/bin/python", "-m", "safekit.rfs", "primary", "/s/primary.spec.json"], "primary"),
        (["python3", "-m", "safekit.rfs", "secondary", "/x.json"], "secondary"),
        (["/opt/safekit/venv/lib/python3.11/site-packages/safekit/rfs/native-bin/safekit-rfs-primary",
          "--mountpoint=/srv/data", "/s/primary.spec.json"], "primary"),
        (["/w/native/build/safekit-rfs-secondary", "/s/secondary.spec.json"], "secondary"),
        (["/v/bin/python", "-m", "safekit.rfs", "splitbrain-save", "/s/x.json"], None),  # not the engine
        (["/w/native/build/safekit-rfs-send", "script"], None),
        (["cat", "safekit-rfs-primary"], None),
        ([], None),
    ],
)  # fmt: skip
def test_a_replication_process_is_recognised_on_either_engine(argv: list[str], role: str | None) -> None:
    assert native.role_of_argv(argv) == role
    assert role_of(" ".join(argv)) == (None if role is None else f"rfs {role}")


# ---------------------------------------------------------------------------- the supervisor
STAND_IN = """#!{python}
# a native secondary's stand-in: the control channel's first event, a log line, exits on stop
import json, sys
sys.stdout.write(json.dumps({{"event": "listening", "addr": "127.0.0.1", "port": 4801}}) + "\\n")
sys.stdout.flush()
sys.stderr.write("WARNING rfs secondary: started by " + " ".join(sys.argv[1:]) + "\\n")
sys.stderr.flush()
for line in sys.stdin:
    if json.loads(line).get("cmd") == "stop":
        break
"""


def test_safekitd_starts_the_native_program_with_the_spec_and_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bin_dir = tmp_path / "bin"
    program(bin_dir, "safekit-rfs-secondary", STAND_IN.format(python=sys.executable))
    monkeypatch.setenv("SAFEKIT_RFS_NATIVE_DIR", str(bin_dir))
    the_spec = spec(tmp_path)
    state_dir = Path(the_spec.state_dir)
    state_dir.mkdir()
    events: list[channel.Event] = []
    log = logging.getLogger("test.rfs.native")

    async def run() -> tuple[object, str]:
        process = rfs_supervisor.RfsProcess("secondary", the_spec, log, events.append, "native")
        await process.start()
        record = json.loads((state_dir / rfs_supervisor.PROCESS_RECORD).read_text())
        found = rfs_supervisor.recorded_process(state_dir)
        await process.stop()
        return record, "" if found is None else found[0]

    with caplog.at_level(logging.INFO, logger="test.rfs.native"):
        record, recorded_role = asyncio.run(run())
    spec_file = state_dir / "secondary.spec.json"
    assert isinstance(record, dict) and record["engine"] == "native" and recorded_role == "secondary"
    # (the stand-in is a script: its interpreter comes first in /proc/PID/cmdline)
    assert record["process"]["cmdline"][-2:] == [str(bin_dir / "safekit-rfs-secondary"), str(spec_file)]
    assert events == [channel.Listening("127.0.0.1", 4801)]
    # the same spec file, with the Python that h21's split-brain save child runs
    written = RfsSpec.load(spec_file)
    assert written.extra["python"] == sys.executable and written.dirs == the_spec.dirs
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"rfs secondary: started by {spec_file}")
    ]
    assert not (state_dir / rfs_supervisor.PROCESS_RECORD).exists()  # forgotten once it ended


def test_a_missing_native_program_fails_the_start_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEKIT_RFS_NATIVE_DIR", str(tmp_path / "empty"))
    process = rfs_supervisor.RfsProcess(
        "primary", spec(tmp_path), logging.getLogger("t"), lambda e: None, "native"
    )
    with pytest.raises(rfs_supervisor.RfsError, match=r"safekit-rfs-primary \(primary\) is not in"):
        asyncio.run(process.start())
    assert process.proc is None


def test_before_a_native_process_the_directory_is_made_and_a_primary_forgets_its_secondary_record(
    tmp_path: Path,
) -> None:
    the_spec = spec(tmp_path)
    state_dir = Path(the_spec.state_dir)
    state_dir.mkdir()
    (state_dir / "secondary.json").write_text(json.dumps({"in_sync": False, "mounts": []}))
    assert rfs_supervisor.prepare_native("secondary", the_spec) == 0  # nothing mounted here
    assert (state_dir / "secondary.json").exists()  # a secondary keeps its record
    assert stat.S_ISDIR((tmp_path / "data").stat().st_mode)  # made, as the Python process's open_dir
    assert rfs_supervisor.prepare_native("primary", the_spec) == 0
    assert not (state_dir / "secondary.json").exists()


def test_a_wrong_daemon_default_fails_the_replications_start_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEKIT_RFS_ENGINE", "c")
    config, _ = parse_module(MODULE.format(attribute=""), "userconfig.xml", env={})
    settings = MirrorSettings(
        local_node="node1",
        peer_node="node2",
        maxloop=3,
        loop_interval=100.0,
        split_brain_bound=4.0,
        detection_skew=2.0,
        peer_timeout=5.0,
    )
    submitted: list[object] = []
    replication = ModuleReplication(
        spec(tmp_path),
        config,
        settings,
        log=logging.getLogger("t"),
        resources={},
        submit=submitted.append,
        state=lambda: SimpleNamespace(generation=3, peer_generation_seen=0),  # type: ignore[arg-type,return-value]
    )
    action = StartReplication(ReplicationRole.PRIMARY)
    asyncio.run(replication.start(action))
    assert len(submitted) == 1 and isinstance(failed := submitted[0], ActionFailed)
    assert failed.action == action and failed.detail == "SAFEKIT_RFS_ENGINE='c': give python or native"
    assert replication.process is None
