"""Inputs of the configuration fuzzers, shared with the API's: the real documents (examples and
the XML snippets of docs/config.md) and the mutations applied to them."""

from __future__ import annotations

import re
from pathlib import Path

from fuzz_support import mutated
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def _documents() -> dict[str, str]:
    """The real examples and every XML snippet of docs/config.md, by name."""
    found = {str(path.relative_to(ROOT)): path.read_text() for path in sorted(ROOT.glob("examples/**/*.xml"))}
    doc = (ROOT / "docs" / "config.md").read_text()
    for index, snippet in enumerate(re.findall(r"```xml\n(.*?)```", doc, re.S)):
        found[f"docs/config.md#{index}"] = snippet
    return found


EVERY_SECTION = """<!DOCTYPE safe>
<safe>
<macro name="VIRTUAL_IP" value="198.18.0.200"/>
<macro name="PORT" value="8080"/>
<service mode="mirror" boot="auto" failover="on" defaultprim="alone" maxloop="3" loop_interval="24h">
  <heart port="4800" pulse="700ms" timeout="30s">
    <heartbeat name="default" ident="flow" pulse="200" timeout="1500"/>
  </heart>
  <vip tcpreset="on">
    <interface_list>
      <interface check="on" arpinterval="60" name="eth0">
        <real_interface>
          <virtual_addr addr="%VIRTUAL_IP%" where="one_side_alias" netmask="24" check="on" provider="arp"/>
        </real_interface>
      </interface>
    </interface_list>
  </vip>
  <rfs async="second" locktimeout="100" sendtimeout="30" reitimeout="150" nbrei="3" packetsize="65536"
       syncdelta="1" splitbrain_keep_free="10%">
    <replicated dir="/var/lib/app" mode="read_only">
      <notreplicated path="tmp"/>
      <notreplicated regexpath="cache/.*"/>
      <tocheck path="data"/>
    </replicated>
  </rfs>
  <user nicestoptimeout="300" forcestoptimeout="300" logging="userlog">
    <var name="APP_PORT" value="%PORT%"/>
  </user>
  <errd polltimer="30s">
    <proc name="app" atleast="1" atmax="4" action="restart" class="prim" start_after="2"/>
    <proc nameregex="python[0-9.]*" argregex="http\\.server" action="stopstart" class="both"/>
  </errd>
  <check>
    <tcp ident="app" when="prim" action="restart">
      <to addr="127.0.0.1" port="%PORT%" interval="10" timeout="5"/>
    </tcp>
    <ping ident="gw" action="wait"><to addr="198.18.0.254"/></ping>
    <intf ident="eth" action="wait"><to name="eth0" interval="5"/></intf>
    <ip ident="vip" action="stopstart"><to addr="%VIRTUAL_IP%"/></ip>
    <module name="db" action="wait"><to addr="198.18.0.2" port="9010"/></module>
    <custom ident="probe" exec="/opt/probe" arg="--fast" when="both" action="stopstart"/>
    <splitbrain ident="witness" exec="arbitrator" arg="198.18.0.254:9455"/>
  </check>
  <failover extends="on" period="5000" handle_time="15000">
    hb_lost: if (heartbeat.? == down &amp;&amp; !(splitbrain.witness == up)) then wait();
    app_down: if (custom.probe == down || tcp.app == down) then stopstart();
  </failover>
</service>
</safe>
"""
"""A userconfig.xml that uses every section and most attributes: mutating its values reaches
every attribute reader."""

DOCUMENTS = {**_documents(), "every-section.xml": EVERY_SECTION}
MODULES = {name: text for name, text in DOCUMENTS.items() if "<safe" in text}
CLUSTERS = {name: text for name, text in DOCUMENTS.items() if "<cluster" in text and "<safe" not in text}


_XML_BITS = (
    b"<", b">", b"/>", b"</", b"&", b"&amp;", b"&lt;", b"&#0;", b"&#x10FFFF;", b"&nope;", b'"', b"'", b"=",
    b"<!--", b"-->", b"<![CDATA[", b"]]>", b"<?xml version='1.0'?>", b"<!DOCTYPE safe>",
    b'<?xml version="1.0" encoding="utf-7"?>', b'<?xml version="1.0" encoding="latin-1"?>',
    b"%", b"%VIRTUAL_IP%", b"%PERCENT%", b"%NOPE%", b"\x00", b"\xff", b"\xef\xbb\xbf", b"\r", b"\n",
    b"<macro name=\"M\" value=\"%M%\"/>", b"<heartbeat/>", b"<rfs>", b"</service>", b' x="1"',
    b"!", b"(", b")", b"&&", b"||", b";",
)  # fmt: skip


@st.composite
def xml_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte mutations, plus insertions of XML syntax where they hurt most."""
    if draw(st.booleans()):
        return draw(mutated(data, max_mutations=3))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            data = data[:position] + draw(st.sampled_from(_XML_BITS)) + data[position:]
        else:
            end = draw(st.integers(position, min(len(data), position + 40)))
            data = data[:position] + data[end:]
    return data


WEIRD_VALUES = (
    "",
    " ",
    "0",
    "-1",
    "1" * 400,
    "9" * 400 + "d",
    "\u00b2",
    "h:\u00b2",
    "\u0661\u0662",
    "\U0001d7d8",
    "1e9",
    "0x10",
    "1_000",
    "+1",
    "\u00bd",
    "NaN",
    "inf",
    "%NOPE%",
    "%PERCENT%",
    "%%",
    "a{99999999999}",
    "(?a)(?u)",
    "(" * 500,
    "/",
    "../x",
    "256.1.1.1",
    "1.2.3",
    "h:0",
    "h:65536",
    "h:",
    ":",
    "a b c",
    "\t",
    "é",
    "\u202e",
    "on ",
    "ON",
    "Mirror",
)
"""Values that have tripped number, name and address readers elsewhere."""

_ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')


_ODD_CHARACTERS = "\u00b2\u0661\U0001d7d8\u00bd\u2167 %:.-/\\*?é\u202e\t0"


@st.composite
def with_values_replaced(draw: st.DrawFn, document: str) -> str:
    """`document` with some attribute values (one in four) replaced by odd ones, or with odd
    characters put in them. Escaped: the XML stays well-formed, so the readers get the values."""
    for match in reversed(list(_ATTRIBUTE.finditer(document))):
        if draw(st.integers(0, 3)):
            continue
        value = match.group(2)
        if draw(st.booleans()):
            value = draw(st.sampled_from(WEIRD_VALUES) | st.text(max_size=12))
        else:
            for _ in range(draw(st.integers(1, 2))):
                at = draw(st.integers(0, len(value)))
                odd = draw(st.sampled_from(_ODD_CHARACTERS))
                value = value[:at] + odd + value[at + draw(st.integers(0, 1)) :]
        escaped = "".join(c if c.isprintable() and c not in '<&"' else f"&#{ord(c)};" for c in value)
        escaped = "".join(c for c in escaped if not 0xD800 <= ord(c) <= 0xDFFF)
        start, end = match.span(2)
        document = document[:start] + escaped + document[end:]
    return document
