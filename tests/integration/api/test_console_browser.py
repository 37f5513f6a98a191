"""The console in Debian's Chromium (headless, Playwright with executable_path; never a downloaded
browser) against the lab cluster: log in, see PRIM and SECOND, swap with confirmation, see the
roles swap, power off the primary and see the failover arrive live. Screenshots are kept in
test-artifacts/console/ (SAFEKIT_TEST_ARTIFACTS moves it)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import ARTIFACTS, MODULE, PASSWORD, ApiLab, chromium, node_pins
from playwright.sync_api import Browser, Page, expect

SHOTS = ARTIFACTS / "console"


@pytest.fixture(scope="module")
def browser(api_lab: ApiLab) -> Iterator[Browser]:
    with chromium(node_pins(api_lab.lab, api_lab.cluster.nodes)) as launched:
        yield launched


def cell(page: Page, node: str, module: str = MODULE) -> object:
    return page.locator(f'#grid td[data-node="{node}"][data-module="{module}"] .state')


def test_login_swap_and_failover_live(api_lab: ApiLab, browser: Browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(api_lab.url("node1", "/"))
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#login-user", "alice")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("wrong user or password")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")

    expect(cell(page, "node1")).to_have_text("PRIM", timeout=15_000)  # type: ignore[arg-type]
    expect(cell(page, "node2")).to_have_text("SECOND", timeout=15_000)  # type: ignore[arg-type]
    expect(cell(page, "node1")).to_have_class("state green")  # type: ignore[arg-type]
    expect(page.locator("#live")).to_have_text("live")
    page.screenshot(path=str(SHOTS / "01-prim-second.png"), full_page=True)

    page.click('#tabs button[data-tab="control"]')
    page.click(f'#control-body button[data-command="swap"][data-node="node1"][data-module="{MODULE}"]')
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("swap web on node1")
    page.screenshot(path=str(SHOTS / "02-confirm-swap.png"))
    page.click("#confirm-ok")
    expect(page.locator("#control-result")).not_to_contain_text("refused")

    page.click('#tabs button[data-tab="monitoring"]')
    expect(cell(page, "node1")).to_have_text("SECOND", timeout=30_000)  # type: ignore[arg-type]
    expect(cell(page, "node2")).to_have_text("PRIM", timeout=30_000)  # type: ignore[arg-type]
    expect(cell(page, "node2")).to_have_class("state green", timeout=30_000)  # type: ignore[arg-type]
    page.screenshot(path=str(SHOTS / "03-swapped.png"), full_page=True)
    assert api_lab.cluster.state("node2", MODULE)["state"] == "PRIM"

    # The page is never reloaded from here on: what changes arrives through the event stream.
    page.evaluate("window.__sameDocument = true")
    killed_at = time.monotonic()
    api_lab.lab.kill("node2")
    try:
        expect(cell(page, "node1")).to_have_text("ALONE", timeout=30_000)  # type: ignore[arg-type]
        expect(cell(page, "node2")).to_have_text("unreachable", timeout=30_000)  # type: ignore[arg-type]
        seen_after = time.monotonic() - killed_at
        expect(page.locator("#timeline")).to_contain_text("ALONE")
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=str(SHOTS / "04-failover-live.png"), full_page=True)
        print(f"failover shown in the console {seen_after:.1f} s after the power cut")
        assert not errors, errors
        page.close()
    finally:
        restore_node2(api_lab)


def restore_node2(api_lab: ApiLab) -> None:
    """Leave the lab as the package's other tests expect it, whatever their order: node2 powered
    on, its daemon running, the module its secondary again."""
    api_lab.lab.start("node2")
    api_lab.cluster.start_daemon("node2")
    if api_lab.cluster.state("node2", MODULE)["state"] == "STOP":
        api_lab.cluster.safekit("node2", "start", "-m", MODULE)
    api_lab.cluster.wait_state("node2", MODULE, "SECOND", timeout=90)
    api_lab.cluster.wait_state("node1", MODULE, "PRIM", timeout=30)
