"""The native programs' lookup (safekit.rfs.native, ADR 0024), what the former engine choice does
now (ADR 0029: `<rfs engine="python">` and SAFEKIT_RFS_ENGINE are accepted and ignored, with a
warning), and safekitd starting a native program through the supervisor (a stand-in, no FUSE)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from safekit.chaos.procstats import role_of
from safekit.config import ConfigError, parse_module
from safekit.daemon import rfs_supervisor
from safekit.daemon.mirror_replication import ModuleReplication
from safekit.mirror import MirrorSettings, ReplicationRole, StartReplication
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


# ---------------------------------------------------------------------------- the former choice
@pytest.mark.parametrize("attribute", ["", ' engine="native"', ' engine=" native "'])
def test_no_engine_or_the_native_one_is_quiet(attribute: str) -> None:
    module, warnings = parse_module(MODULE.format(attribute=attribute), "userconfig.xml", env={})
    assert module.rfs is not None and warnings == ()


def test_the_python_engine_is_accepted_with_a_warning_that_it_is_ignored() -> None:
    module, warnings = parse_module(MODULE.format(attribute=' engine="python"'), "userconfig.xml", env={})
    assert module.rfs is not None and module.rfs.replicated[0].dir == "/srv/data"
    assert [str(w) for w in warnings] == [
        "userconfig.xml:5: <rfs>: attribute 'engine': 'python' is ignored: the Python replication data "
        "path was removed, the module runs on the native programs (docs/adr/0029); remove the attribute"
    ]


def test_an_unknown_engine_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_module(MODULE.format(attribute=' engine="rust"'), "userconfig.xml", env={})
    assert [str(e) for e in caught.value.errors] == [
        "userconfig.xml:5: <rfs>: attribute 'engine': 'rust' is not allowed (use one of: native, python)"
    ]


def test_safekitds_environment_no_longer_chooses_and_says_so() -> None:
    assert native.environment_notice({}) is None
    assert native.environment_notice({"SAFEKIT_RFS_ENGINE": ""}) is None
    assert native.environment_notice({"SAFEKIT_RFS_ENGINE": " Native "}) is None
    assert native.environment_notice({"SAFEKIT_RFS_ENGINE": "python"}) == (
        "SAFEKIT_RFS_ENGINE='python' is ignored: the native programs are the only replication data path "
        "(the Python one was removed); remove SAFEKIT_RFS_ENGINE from safekitd's environment"
    )


@pytest.mark.parametrize(
    ("attribute", "writeback"), [("", False), (' writeback="on"', True), (' writeback="off"', False)]
)
def test_rfs_writeback_attribute_reaches_the_spec(tmp_path: Path, attribute: str, writeback: bool) -> None:
    module, warnings = parse_module(MODULE.format(attribute=attribute), "userconfig.xml", env={})
    assert module.rfs is not None and module.rfs.writeback is writeback and warnings == ()
    text = replace(spec(tmp_path), writeback=module.rfs.writeback).to_json()
    assert json.loads(text)["writeback"] is writeback  # what the native primary reads
    assert RfsSpec.from_json(text).writeback is writeback


def test_a_wrong_writeback_value_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_module(MODULE.format(attribute=' writeback="sometimes"'), "userconfig.xml", env={})
    assert "attribute 'writeback': 'sometimes' is not allowed (use on/off or yes/no)" in str(
        caught.value.errors[0]
    )


# ---------------------------------------------------------------------------- the lookup
def test_the_wheels_programs_come_before_the_debian_packages_then_the_checkouts(tmp_path: Path) -> None:
    package, deb, checkout = tmp_path / "package", tmp_path / "libexec", tmp_path / "checkout"
    program(checkout, "safekit-rfs-primary")
    assert native.find_program("primary", {}, package, checkout, deb) == checkout / "safekit-rfs-primary"
    program(deb, "safekit-rfs-primary")
    assert native.find_program("primary", {}, package, checkout, deb) == deb / "safekit-rfs-primary"
    program(package, "safekit-rfs-primary")
    assert native.find_program("primary", {}, package, checkout, deb) == package / "safekit-rfs-primary"
    assert Path("/opt/safekit/libexec") == native.DEB_LIBEXEC  # packaging/build_deb.py's LIBEXEC


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
    deb = tmp_path / "libexec"
    with pytest.raises(native.EngineError) as caught:
        native.find_program("primary", {}, package, checkout, deb)
    message = str(caught.value)
    assert message.startswith(
        f"the native replication program safekit-rfs-primary (primary) is not in {package}, {deb}, "
        f"{checkout}: "
    )
    assert "make -C native" in message and "SAFEKIT_RFS_NATIVE_DIR" in message


def test_the_checkout_build_directory_is_this_repositorys() -> None:
    root = native.CHECKOUT_BUILD.parents[1]  # the checkout these tests run from
    assert native.CHECKOUT_BUILD.name == "build" and (root / "native" / "Makefile").is_file()
    assert (root / "src" / "safekit" / "rfs" / "native.py").samefile(native.__file__)


# ---------------------------------------------------------------------------- command lines
def test_command_lines_of_both_roles(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    primary, secondary = program(bin_dir, "safekit-rfs-primary"), program(bin_dir, "safekit-rfs-secondary")
    env = {"SAFEKIT_RFS_NATIVE_DIR": str(bin_dir)}
    spec_file = tmp_path / "primary.spec.json"
    # both serve the spec's directories in place, one or several: the spec file says which
    assert native.command_line("primary", spec_file, env) == (str(primary), str(spec_file))
    assert native.command_line("secondary", spec_file, env) == (str(secondary), str(spec_file))
    with pytest.raises(native.EngineError, match="safekit-rfs-primary"):
        native.command_line("primary", spec_file, {"SAFEKIT_RFS_NATIVE_DIR": str(tmp_path / "none")})


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/opt/safekit/venv/lib/python3.11/site-packages/safekit/rfs/native-bin/safekit-rfs-primary",
          "--mountpoint=/srv/data", "/s/primary.spec.json"], "primary"),
        (["/w/native/build/safekit-rfs-secondary", "/s/secondary.spec.json"], "secondary"),
        (["/v/bin/python", "-m", "safekit.rfs", "splitbrain-save", "/s/x.json"], None),  # a step
        (["/w/native/build/safekit-rfs-send", "script"], None),
        (["cat", "safekit-rfs-primary"], None),
        ([], None),
    ],
)  # fmt: skip
def test_a_replication_process_is_recognised_by_its_program(argv: list[str], role: str | None) -> None:
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
        process = rfs_supervisor.RfsProcess("secondary", the_spec, log, events.append)
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
    process = rfs_supervisor.RfsProcess("primary", spec(tmp_path), logging.getLogger("t"), lambda e: None)
    with pytest.raises(rfs_supervisor.RfsError, match=r"safekit-rfs-primary \(primary\) is not in"):
        asyncio.run(process.start())
    assert process.proc is None


def test_a_python_daemon_default_is_a_warning_and_the_native_program_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bin_dir = tmp_path / "bin"
    program(bin_dir, "safekit-rfs-secondary", STAND_IN.format(python=sys.executable))
    monkeypatch.setenv("SAFEKIT_RFS_NATIVE_DIR", str(bin_dir))
    monkeypatch.setenv("SAFEKIT_RFS_ENGINE", "python")
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
    the_spec = spec(tmp_path)
    Path(the_spec.state_dir).mkdir()
    replication = ModuleReplication(
        the_spec,
        config,
        settings,
        log=logging.getLogger("t.replication"),
        resources={},
        submit=submitted.append,
        state=lambda: SimpleNamespace(generation=3, peer_generation_seen=0),  # type: ignore[arg-type,return-value]
    )

    async def run() -> tuple[str | None, str | None]:
        await replication.start(StartReplication(ReplicationRole.SECONDARY))
        view = replication.view()
        await replication.stop()
        return (None, None) if view is None else (view["role"], view["engine"])

    with caplog.at_level(logging.INFO, logger="t.replication"):
        shown = asyncio.run(run())
    assert submitted == [] and shown == ("secondary", "native")
    messages = [r.getMessage() for r in caplog.records]
    assert "replication: SAFEKIT_RFS_ENGINE='python' is ignored" in messages[0], messages
    assert any(m.startswith("replication secondary started (native engine)") for m in messages), messages
