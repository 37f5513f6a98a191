"""The console's forms in Debian's Chromium against the API lab (api1): the cluster form with a
wrong address (the error shown on its field), fixed and applied to both nodes; then a module made
from the generic mirror template through the guided form, its userconfig.xml shown as it is typed,
installed on both nodes and started from the page, seen PRIM and SECOND. The lab is left as found:
the original cluster.xml put back, the new module stopped and uninstalled on both nodes.
Screenshots 13 to 17 in test-artifacts/console/."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from conftest import ARTIFACTS, PASSWORD, ApiLab, chromium, node_pins
from playwright.sync_api import Browser, Page, expect

from safekit.config.cluster_parser import parse_cluster
from safekit.lab.cluster import BIN
from safekit.membership import clusterkey
from safekit.rfs import native

SHOTS = ARTIFACTS / "console"
NEW = "gm"


@pytest.fixture(scope="module")
def browser(api_lab: ApiLab) -> Iterator[Browser]:
    with chromium(node_pins(api_lab.lab, api_lab.cluster.nodes)) as launched:
        yield launched


def login(page: Page, api_lab: ApiLab) -> None:
    page.goto(api_lab.url("node1", "/"))
    page.fill("#login-user", "alice")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)


def cat(api_lab: ApiLab, node: str, path: str) -> str:
    return api_lab.lab.exec(node, ["cat", path], check=True).stdout


def stat_mode(api_lab: ApiLab, node: str, path: str) -> int:
    return int(api_lab.lab.exec(node, ["stat", "-c", "%a", path], check=True).stdout.strip(), 8)


def test_cluster_form_error_inline_then_applied(api_lab: ApiLab, browser: Browser) -> None:
    original = {n: cat(api_lab, n, "/etc/safekit/cluster.xml") for n in api_lab.cluster.nodes}
    modes = {n: stat_mode(api_lab, n, "/etc/safekit/cluster.xml") for n in api_lab.cluster.nodes}
    key_text = cat(api_lab, "node1", "/etc/safekit/cluster.key")
    key = clusterkey.decode_key_file(key_text)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    bodies: list[str] = []
    page.on(
        "response",
        lambda r: bodies.append(r.text()) if "/api/v1/" in r.url and "events" not in r.url else None,
    )
    try:
        login(page, api_lab)
        page.click('#tabs button[data-tab="cluster"]')
        addr = page.locator('[data-field="lans.0.nodes.1.addr"]')
        good = api_lab.address("node2")
        expect(addr).to_have_value(good, timeout=10_000)
        expect(page.locator("#cluster-xml")).to_contain_text(f'addr="{good}"')
        expect(page.locator("#cluster-apply")).to_be_enabled()

        addr.fill("198.18.0.999")
        error = page.locator('.field-error[data-for="lans.0.nodes.1.addr"]')
        expect(error).to_contain_text("not an IPv4 address")
        expect(addr).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#cluster-apply")).to_be_disabled()
        page.screenshot(path=str(SHOTS / "13-cluster-form-error.png"), full_page=True)

        addr.fill(good)
        expect(error).to_have_count(0)
        expect(page.locator("#cluster-apply")).to_be_enabled()
        page.click("#cluster-apply")
        page.click("#confirm-ok")
        result = page.locator("#cluster-result")
        # the same cluster: written on both nodes, and nothing for safekitd to take live (ADR 0043)
        for node in api_lab.cluster.nodes:
            row = result.locator(f'li[data-node="{node}"]')
            expect(row).to_contain_text("written", timeout=20_000)
            expect(row).to_have_attribute("data-live", "true")
        page.screenshot(path=str(SHOTS / "14-cluster-applied.png"), full_page=True)
        shown = page.locator("#cluster-xml").text_content() or ""
        for node in api_lab.cluster.nodes:
            written = cat(api_lab, node, "/etc/safekit/cluster.xml")
            assert written == shown  # the file the server rendered, on every node
            assert parse_cluster(written) == parse_cluster(original[node])  # same cluster
            assert stat_mode(api_lab, node, "/etc/safekit/cluster.xml") == modes[node]  # its mode kept
        assert cat(api_lab, "node1", "/etc/safekit/cluster.key") == key_text
        # the form was read and applied through the API: those answers are what is searched
        assert any('"key_fingerprint"' in body for body in bodies), "no cluster config answer seen"
        page_text = page.content() + "".join(bodies)
        for leak in (key_text.strip(), key.hex(), key_text.split(":", 1)[-1].strip()):
            assert leak not in page_text
        audit = cat(api_lab, "node1", "/var/log/safekit/audit.log")
        assert "cluster config apply (all)" in audit
        assert key_text.split(":", 1)[-1].strip() not in audit
        assert not errors, errors
    finally:
        page.close()
        for node, text in original.items():
            api_lab.cluster.write(node, "/etc/safekit/cluster.xml", text, mode=modes[node])


def test_guided_module_from_the_mirror_template_installed_and_started(
    api_lab: ApiLab, browser: Browser
) -> None:
    for role in native.PROGRAMS:  # the module replicates a directory: the native programs are needed
        native.find_program(role, os.environ)
    plan = api_lab.lab.plan()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, api_lab)
        page.click('#tabs button[data-tab="newmodule"]')
        page.fill("#nm-name", NEW)
        # from scratch first: a relative directory and a rule on an undeclared checker, each on its field
        page.fill('[data-field="replicated.0.dir"]', "srv/data")
        page.fill('textarea[data-field="failover_rules"]', "app_down: if (tcp.app == down) then restart();")
        expect(page.locator('.field-error[data-for="replicated.0.dir"]')).to_contain_text("absolute")
        expect(page.locator('.field-error[data-for="failover_rules"]')).to_contain_text("tcp.app")
        expect(page.locator("#nm-install")).to_be_disabled()
        page.screenshot(path=str(SHOTS / "15-guided-scratch-errors.png"), full_page=True)
        page.fill('[data-field="replicated.0.dir"]', "/srv/data")
        page.click("#nm-add-checker")
        page.fill('[data-field="checkers.0.ident"]', "app")
        page.fill('[data-field="checkers.0.port"]', "8080")
        expect(page.locator(".field-error")).to_have_count(0)
        expect(page.locator("#nm-xml")).to_contain_text('<tcp ident="app">')

        page.select_option("#nm-source", "mirror")
        vip = page.locator('[data-field="values.virtual_ip"]')
        vip.fill("198.18.0")
        expect(page.locator('.field-error[data-for="values.virtual_ip"]')).to_contain_text("not an IPv4")
        vip.fill(str(plan.vips[1]))
        page.fill('[data-field="values.replicated_dir"]', f"/srv/{NEW}")
        page.fill('[data-field="values.heartbeat_port"]', "4840")
        page.fill('[data-field="values.witness"]', str(plan.host("witness").address))
        xml = page.locator("#nm-xml")
        expect(xml).to_contain_text(f'<macro name="VIRTUAL_IP" value="{plan.vips[1]}"/>')
        expect(xml).to_contain_text('<macro name="HEARTBEAT_PORT" value="4840"/>')
        expect(page.locator(".field-error")).to_have_count(0)
        expect(page.locator("#nm-install")).to_be_enabled()
        page.screenshot(path=str(SHOTS / "16-guided-module.png"), full_page=True)

        page.click("#nm-install")
        page.click("#confirm-ok")
        expect(page.locator("#nm-result")).to_contain_text("installed: node1 ok, node2 ok", timeout=30_000)
        for node in api_lab.cluster.nodes:
            installed = cat(api_lab, node, f"/opt/safekit/modules/{NEW}/conf/userconfig.xml")
            assert installed == xml.text_content()
            assert api_lab.cluster.state(node, NEW)["state"] == "STOP"
        page.click("#nm-start")
        page.click("#confirm-ok")
        expect(page.locator("#nm-result")).to_contain_text("started", timeout=60_000)
        page.click('#tabs button[data-tab="monitoring"]')
        cell = 'td[data-node="{}"][data-module="' + NEW + '"] .state'
        expect(page.locator("#grid " + cell.format("node1"))).to_have_text("PRIM", timeout=60_000)
        expect(page.locator("#grid " + cell.format("node2"))).to_have_text("SECOND", timeout=60_000)
        # in sync: the secondary Ready (its copy up to date), in words and colour
        expect(page.locator("#grid " + cell.format("node2"))).to_have_class("state green", timeout=60_000)
        expect(page.locator("#grid " + cell.format("node2") + " + .reason")).to_contain_text("Ready")
        page.screenshot(path=str(SHOTS / "17-guided-module-prim-second.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()
        for node in api_lab.cluster.nodes:  # shown when the test fails
            log = api_lab.lab.exec(node, [str(BIN / "safekit"), "log", "-m", NEW], timeout=30).stdout
            print(f"--- {node}: safekit log -m {NEW}\n{log[-3000:]}")
        for node in reversed(api_lab.cluster.nodes):
            api_lab.lab.exec(node, [str(BIN / "safekit"), "stop", "-m", NEW], timeout=90)
        for node in api_lab.cluster.nodes:
            api_lab.lab.exec(node, [str(BIN / "safekit"), "module", "uninstall", "-m", NEW], timeout=90)


FARM = "gf"


def test_guided_farm_from_scratch_installed_and_started(api_lab: ApiLab, browser: Browser) -> None:
    """The guided form's farm from scratch: the userconfig.xml the node renders beside the form (a
    virtual IP on every node, a balancing group, checked by the engine's loader and against
    cluster.xml: an unknown node under its field), installed on both nodes and started, UP on both."""
    plan = api_lab.lab.plan()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, api_lab)
        page.click('#tabs button[data-tab="newmodule"]')
        page.fill("#nm-name", FARM)
        page.select_option('select[data-field="mode"]', "farm")
        xml = page.locator("#nm-xml")
        page.fill('[data-field="heartbeat_port"]', "4860")
        page.fill('[data-field="vip.addr"]', str(plan.vips[2]))
        page.fill('[data-field="groups.0.name"]', "web")
        page.fill('[data-field="groups.0.hosts"]', "node1:2, node9")
        expect(page.locator('.field-error[data-for="groups.0.hosts.1.name"]')).to_contain_text("node9")
        expect(page.locator("#nm-install")).to_be_disabled()
        page.fill('[data-field="groups.0.hosts"]', "node1:2, node2")
        page.fill('[data-field="groups.0.rules.0.port"]', "80")
        expect(page.locator(".field-error")).to_have_count(0)
        expect(xml).to_contain_text('<service mode="farm">')
        expect(xml).to_contain_text('<host name="node1" power="2"/>')
        expect(xml).to_contain_text(f'<virtual_addr addr="{plan.vips[2]}" where="alias"/>')
        expect(page.locator("#nm-install")).to_be_enabled()
        page.screenshot(path=str(SHOTS / "18-guided-farm.png"), full_page=True)

        page.click("#nm-install")
        page.click("#confirm-ok")
        expect(page.locator("#nm-result")).to_contain_text("installed: node1 ok, node2 ok", timeout=30_000)
        for node in api_lab.cluster.nodes:
            assert (
                cat(api_lab, node, f"/opt/safekit/modules/{FARM}/conf/userconfig.xml") == xml.text_content()
            )
        page.click("#nm-start")
        page.click("#confirm-ok")
        expect(page.locator("#nm-result")).to_contain_text("UP on every node", timeout=60_000)
        for node in api_lab.cluster.nodes:
            assert api_lab.cluster.state(node, FARM)["state"] == "UP"
        assert not errors, errors
    finally:
        page.close()
        for node in api_lab.cluster.nodes:
            api_lab.lab.exec(node, [str(BIN / "safekit"), "stop", "-m", FARM], timeout=90)
        for node in api_lab.cluster.nodes:
            api_lab.lab.exec(node, [str(BIN / "safekit"), "module", "uninstall", "-m", FARM], timeout=90)


def test_the_raw_editor_stays_as_the_advanced_tab(api_lab: ApiLab, browser: Browser) -> None:
    """The Advanced (XML) tab: web2's userconfig.xml (stopped on both nodes) loaded, an error typed
    flagged on its line with Apply off, the text put back and applied to both nodes unchanged."""
    path = "/opt/safekit/modules/web2/conf/userconfig.xml"
    original = cat(api_lab, "node1", path)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, api_lab)
        page.click('#tabs button[data-tab="config"]')
        page.select_option("#config-module", "web2")
        text = page.locator("#config-text")
        expect(text).to_have_value(original, timeout=10_000)
        expect(page.locator("#config-apply")).to_be_enabled()
        line = next(i for i, row in enumerate(original.splitlines(), 1) if 'port="4820"' in row)
        text.fill(original.replace('port="4820"', 'port="port"'))
        flagged = page.locator("#config-errors li:not(.warning)")
        expect(flagged.first).to_have_attribute("data-line", str(line), timeout=10_000)
        expect(page.locator("#config-apply")).to_be_disabled()
        text.fill(original)
        expect(page.locator("#config-errors li:not(.warning)")).to_have_count(0, timeout=10_000)
        expect(page.locator("#config-apply")).to_be_enabled()
        page.click("#config-apply")
        page.click("#confirm-ok")
        expect(page.locator("#config-result")).to_contain_text("applied: node1 ok, node2 ok", timeout=20_000)
        for node in api_lab.cluster.nodes:
            assert cat(api_lab, node, path) == original
        assert not errors, errors
    finally:
        page.close()
