"""Every page on a phone (390 × 844) in both themes and on a desktop (1280 × 800): nothing
scrolls sideways on the phone, where the header folds into a menu that opens to its links;
every control in the header and the content is a target at least 24 × 24 px (WCAG 2.5.8;
a link inside a sentence is exempt, as WCAG allows); headings do not skip a level under one h1;
axe-core finds nothing serious or critical; and the home page's GPU names fit on two lines.

Three visitors walk: signed out; a customer with a paid order, a running instance, an invoice
and a line in the cart; and an admin with two-factor authentication in the operator console.
The pages are the app's own: every GET route of a `pages` module is walked or named below."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute
from playwright.async_api import Page, expect

from computebill.app import create_app
from computebill.auth.dependencies import json_routes
from tests.browser.chromium import PHONE, VIEWPORT, NewContext, phone_screenshot
from tests.browser.flows import (
    an_operator,
    buy_h100s_and_leave_more_in_the_cart,
    fresh_email,
    log_in_with_a_code,
    reload_until,
)
from tests.console.test_console_api import failed_event
from tests.support.platform import Platform

# About three minutes alone; more on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AXE = Path(__file__).parents[2] / "node_modules" / "axe-core" / "axe.min.js"
NOT_PAGES = {
    "/gpus/{slug}/price": "the configurator's price box (htmx)",
    "/dashboard/instances": "the dashboard's list of instances (htmx)",
    "/billing/balance": "the billing page's balance (htmx)",
    "/checkout/success/status": "the checkout's status box (htmx)",
    "/credits/top-ups/success/status": "a top-up's status box (htmx)",
    "/account/billing-profile/summary": "the billing profile's summary (htmx)",
    "/billing/invoices/{invoice_id}.pdf": "a PDF",
    "/billing/statements/{statement_id}.{extension}": "a PDF or a CSV file",
    "/_dev/mail.json": "JSON",
    "/_dev/mail/{mail_id}/html": "an e-mail's HTML as it was sent",
    "/cart/pending": "adds what a signed-out visitor chose, then redirects to the cart",
}
NOT_WALKED = {
    "/credits/top-ups/success": "needs a paid top-up; the checkout's success page is walked",
}
SIGNED_OUT = (
    "/",
    "/gpus/nvidia",
    "/gpus/amd",
    "/gpus/nvidia-h100",
    "/login",
    "/signup",
    "/password-reset",
    "/password-reset/confirm?token=not-a-token",
    "/verify-email?token=not-a-token",
    "/account/deleted",
    "/checkout/canceled",
    "/credits/top-ups/canceled",
    "/no-such-page",
)
SCREENSHOTS = {
    "/": "home",
    "/gpus/nvidia-h100": "configurator",
    "/cart": "cart",
    "/dashboard": "dashboard",
    "/billing": "billing",
}
SIGNED_OUT_MENU = ("NVIDIA", "AMD", "Log in", "Sign up")
CUSTOMER_MENU = ("NVIDIA", "AMD", "Instances", "Billing", "Cart")

OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"
# The outermost elements that stick out past the window's right edge.
TOO_WIDE = """() => [...document.querySelectorAll("main *, header *")].filter(element => {
  const sticksOut = node => node.getBoundingClientRect().right > innerWidth + 0.5;
  return sticksOut(element) && !sticksOut(element.parentElement);
}).slice(0, 3).map(element => `<${element.tagName.toLowerCase()} class="${element.className}">`)"""
THEME = "light => document.documentElement.classList.toggle('light', light)"
SMALL_TARGETS = """() => {
  // A link inside a sentence is exempt (WCAG 2.5.8): inline, with text of its block around it.
  function inSentence(control) {
    if (control.tagName !== "A" || getComputedStyle(control).display !== "inline") return false;
    let block = control.parentElement;
    while (getComputedStyle(block).display === "inline") block = block.parentElement;
    return block.textContent.trim().length > control.textContent.trim().length;
  }
  const found = [];
  const controls = document.querySelectorAll(
    ":is(header, main) :is(a, button, input, select, textarea, summary)");
  for (const control of controls) {
    if (!control.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    // A checkbox or a radio button is pressed through its label as well.
    const target = ["checkbox", "radio"].includes(control.type) && control.labels.length
      ? control.labels[0] : control;
    const box = target.getBoundingClientRect();
    if (box.width <= 1 && box.height <= 1) continue;  // visually hidden (the skip link)
    if ((box.height >= 23.5 && box.width >= 23.5) || inSentence(control)) continue;
    const name = (control.textContent || control.name || "").trim().slice(0, 40);
    found.push(`<${control.tagName.toLowerCase()}> "${name}" ` +
      `${box.width.toFixed(1)}×${box.height.toFixed(1)}`);
  }
  return found;
}"""
HEADINGS = """() => [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")]
  .filter(heading => !heading.closest("[hidden]"))
  .map(heading => [Number(heading.tagName[1]), heading.textContent.trim().slice(0, 40)])"""
AXE_RUN = """async () => {
  const results = await axe.run(document, { resultTypes: ["violations"] });
  return results.violations.filter(found => ["serious", "critical"].includes(found.impact))
    .map(found => `${found.id} (${found.impact}) ${found.help}: ` +
      found.nodes.slice(0, 4).map(node => node.target.join(" ")).join(" | "));
}"""
# Each GPU card's name, in lines of its own line height.
NAME_LINES = """() => [...document.querySelectorAll("[data-gpu-name]")].map(name =>
  [name.textContent.trim(), name.getBoundingClientRect().height /
   parseFloat(getComputedStyle(name).lineHeight)])"""


@dataclass
class Walk:
    """What the walk found wrong on each page (all of it listed at the end) and where it went."""

    failures: list[str] = field(default_factory=list)
    walked: set[str] = field(default_factory=set)

    async def visit(self, page: Page, path: str, menu: tuple[str, ...]) -> None:
        await page.goto(path)
        await self.check(page, menu)

    async def check(self, page: Page, menu: tuple[str, ...]) -> None:
        """The page as it shows: on the phone in both themes, then on the desktop."""
        path = urlsplit(page.url).path
        self.walked.add(path)
        await page.set_viewport_size(PHONE)
        await page.add_script_tag(path=AXE)
        # Colours checked as they end, not halfway through a transition the theme starts.
        await page.add_style_tag(content="*, ::before, ::after { transition: none !important }")
        await self._menu_opens(page, path, menu)
        for theme in ("dark", "light"):
            await page.evaluate(THEME, theme == "light")
            where = f"{path} ({theme}"
            if (overflow := await page.evaluate(OVERFLOW)) > 0:
                wide = await page.evaluate(TOO_WIDE)
                self.failures.append(f"{where}, phone): scrolls {overflow} px sideways: {wide}")
            for target in await page.evaluate(SMALL_TARGETS):
                self.failures.append(f"{where}, phone): target under 24 px: {target}")
            for violation in await page.evaluate(AXE_RUN):
                self.failures.append(f"{where}, phone): axe: {violation}")
        # Then the desktop, in both themes.
        await page.set_viewport_size(VIEWPORT)
        for theme in ("light", "dark"):
            await page.evaluate(THEME, theme == "light")
            for violation in await page.evaluate(AXE_RUN):
                self.failures.append(f"{path} ({theme}, desktop): axe: {violation}")
        self._headings(path, await page.evaluate(HEADINGS))
        if path in SCREENSHOTS:
            await phone_screenshot(page, SCREENSHOTS[path])

    async def _menu_opens(self, page: Page, path: str, links: tuple[str, ...]) -> None:
        """The header shows the menu's button alone; pressed, it lists the links."""
        header = page.locator("body > header")
        button = header.get_by_role("button", name="Menu")
        await expect(button).to_have_attribute("aria-expanded", "false")
        for name in links:
            await expect(header.get_by_role("link", name=name).first).to_be_hidden()
        await button.click()
        await expect(button).to_have_attribute("aria-expanded", "true")
        for name in links:
            await expect(header.get_by_role("link", name=name).first).to_be_visible()
        if (overflow := await page.evaluate(OVERFLOW)) > 0:
            self.failures.append(f"{path} (menu open): scrolls {overflow} px sideways")
        await button.click()
        await expect(button).to_have_attribute("aria-expanded", "false")

    def _headings(self, path: str, headings: list[tuple[int, str]]) -> None:
        levels = [level for level, _ in headings]
        if levels.count(1) != 1:
            self.failures.append(f"{path}: {levels.count(1)} h1 headings, not one: {headings}")
        for (before, _), (level, text) in zip([(0, ""), *headings], headings, strict=False):
            if level > before + 1:
                self.failures.append(f"{path}: h{level} {text!r} follows an h{before}")


def page_routes(live: Platform) -> list[str]:
    """Every GET route of the app's `pages` modules, as it is declared."""
    found = []
    for route in json_routes(create_app(live.app_settings)):
        declared = route.original_route
        assert isinstance(declared, APIRoute)
        assert route.path is not None
        if "GET" in (declared.methods or ()) and declared.endpoint.__module__.endswith(".pages"):
            found.append(route.path)
    return found


def not_walked(routes: list[str], walked: set[str]) -> list[str]:
    def matches(route: str, path: str) -> bool:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(route))
        return re.fullmatch(pattern, path) is not None

    return [
        route
        for route in routes
        if route not in NOT_PAGES
        and route not in NOT_WALKED
        and not any(matches(route, path) for path in walked)
    ]


async def a_customer_with_everything(page: Page, live: Platform) -> list[str]:
    """Signs up, pays for H100s, waits for the instance to run and the invoice to be issued,
    and leaves another configuration in the cart; the customer's pages with ids in them."""
    _, success = await buy_h100s_and_leave_more_in_the_cart(page, live, fresh_email())
    await page.goto("/dashboard")
    await reload_until(page, "[data-instance-status='running']")
    instance = await page.locator("[data-instance-row]").first.get_attribute("data-instance-id")
    await page.goto("/billing/invoices")
    await reload_until(page, "[data-invoice]")
    invoice = await page.locator("[data-invoice] a").first.get_attribute("href")
    await page.goto("/account/orders")
    order = await page.locator("a[href^='/account/orders/']").first.get_attribute("href")
    return [
        success,
        f"/dashboard/instances/{instance}/terminate",
        f"/dashboard/instances/{instance}/extend",
        str(order),
        str(invoice),
    ]


async def test_every_page_fits_a_phone_and_passes_axe(
    new_context: NewContext, live: Platform
) -> None:
    assert AXE.exists(), "axe-core is missing: `make install` (npm ci) installs it"
    walk = Walk()

    visitor = await (await new_context(bypass_csp=True)).new_page()
    for path in SIGNED_OUT:
        await walk.visit(visitor, path, SIGNED_OUT_MENU)
    await visitor.set_viewport_size(VIEWPORT)
    await visitor.goto("/")
    for name, lines in await visitor.evaluate(NAME_LINES):
        if lines > 2.01:
            walk.failures.append(f"/ (desktop): {name!r} takes {lines:.1f} lines")

    customer = await (await new_context(bypass_csp=True)).new_page()
    with_ids = await a_customer_with_everything(customer, live)
    order_id = with_ids[3].rsplit("/", 1)[1]
    for path in (
        *with_ids,
        "/dashboard",
        "/cart",
        "/billing",
        "/billing/invoices",
        "/account/orders",
        "/account",
        "/account/security",
        "/account/api-keys",
        "/account/ssh-keys",
        "/account/billing-profile",
        "/account/delete",
    ):
        await walk.visit(customer, path, CUSTOMER_MENU)

    event_id = await failed_event(live.settings)
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as http:
        operator = await an_operator(http, live.settings)
    admin = await (await new_context(bypass_csp=True)).new_page()
    await log_in_with_a_code(
        admin, operator, on_code_page=lambda: walk.check(admin, SIGNED_OUT_MENU)
    )
    await admin.goto(f"/admin/orders/{order_id}")
    customer_page = await admin.locator("[data-order-customer]").get_attribute("href")
    await admin.goto("/_dev/mail")
    mail = await admin.locator("a[href^='/_dev/mail/']").first.get_attribute("href")
    for path in (
        "/admin",
        "/admin/customers",
        str(customer_page),
        "/admin/orders",
        f"/admin/orders/{order_id}",
        "/admin/events",
        f"/admin/events/{event_id}",
        "/admin/audit",
        "/admin/jobs",
        "/admin/catalog",
        "/admin/images",
        "/admin/instances",
    ):
        await walk.visit(admin, path, (*CUSTOMER_MENU, "Console"))
    for path in ("/_dev/mail", str(mail)):  # development pages, which show no one signed in
        await walk.visit(admin, path, SIGNED_OUT_MENU)

    assert not walk.failures, "\n".join(walk.failures)
    missed = not_walked(page_routes(live), walk.walked)
    assert not missed, f"pages the walk does not visit (walk them or name them): {missed}"
