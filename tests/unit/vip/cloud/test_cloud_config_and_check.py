"""The <vip> extension of userconfig.xml (provider="..." and <option> children) and
`safekit vip check`, end to end: the command reads the file, loads the providers and runs their
checks against the GCP fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.gcp_fake import GcpFake
from fakes.metadata_fake import GcpMetadataFake
from safekit.cli import main
from safekit.config import ConfigError, load_module

CONFIG = """<!DOCTYPE safe>
<safe>
<service mode="mirror">
  <heart><heartbeat name="default"/></heart>
  <vip>
    <interface_list>
      <interface>
        <real_interface>
          <virtual_addr addr="10.128.0.100" where="one_side_alias" {attrs}>
            {options}
          </virtual_addr>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
</service>
</safe>
"""


def _write(tmp_path: Path, attrs: str, options: str) -> Path:
    path = tmp_path / "userconfig.xml"
    path.write_text(CONFIG.format(attrs=attrs, options=options))
    return path


def test_provider_and_options_are_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'provider="aws_route"',
        '<option name="route_tables" value="rtb-1, rtb-2"/><option name="os_address" value="off"/>',
    )
    address = load_module(path).config.vip.interfaces[0].addresses[0]  # type: ignore[union-attr]
    assert address.provider == "aws_route"
    assert address.options == (("route_tables", "rtb-1, rtb-2"), ("os_address", "off"))


def test_default_provider_is_arp(tmp_path: Path) -> None:
    address = load_module(_write(tmp_path, "", "")).config.vip.interfaces[0].addresses[0]  # type: ignore[union-attr]
    assert (address.provider, address.options) == ("arp", ())


@pytest.mark.parametrize(
    ("attrs", "options", "message"),
    [
        ('provider="AWS-route"', "", "not a provider name"),
        ("", '<option name="x" value="y"/>', "need a cloud provider"),
        ('provider="gcp_route"', '<option name="a" value="1"/><option name="a" value="2"/>', "given twice"),
        ('provider="gcp_route"', '<opt name="a" value="1"/>', "opt"),
    ],
)
def test_bad_vip_extensions_are_errors_with_a_line(
    tmp_path: Path, attrs: str, options: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_module(_write(tmp_path, attrs, options))
    assert message in str(info.value) and "userconfig.xml:" in str(info.value)


@pytest.fixture
def gcp_world() -> Iterator[tuple[GcpFake, GcpMetadataFake]]:
    gcp = GcpFake("proj").start()
    gcp.add_instance("zone-a", "node-a", "10.128.0.2")
    meta = GcpMetadataFake(
        {
            "project/project-id": "proj",
            "instance/zone": "projects/1/zones/zone-a",
            "instance/name": "node-a",
            "instance/network-interfaces/0/ip": "10.128.0.2",
        }
    ).start()
    yield gcp, meta
    gcp.stop()
    meta.stop()


def test_vip_check_command(
    tmp_path: Path, gcp_world: tuple[GcpFake, GcpMetadataFake], capsys: pytest.CaptureFixture[str]
) -> None:
    gcp, meta = gcp_world
    options = (
        f'<option name="endpoint" value="{gcp.url}"/><option name="metadata_url" value="{meta.url}"/>'
        '<option name="route_name" value="safekit-vip"/>'
    )
    path = _write(tmp_path, 'provider="gcp_route"', options)
    assert main(["vip", "check", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "10.128.0.100 (gcp_route, line 9): ok" in out
    assert "identity: node-a in zone-a (proj)" in out
    assert gcp.calls("POST") == [] and gcp.calls("DELETE") == []  # nothing changed

    bad = _write(tmp_path, 'provider="gcp_route"', options.replace("route_name", "route_nam"))
    assert main(["vip", "check", "--file", str(bad)]) == 1
    assert "unknown option(s) route_nam" in capsys.readouterr().out
