"""What the browser tests use: Chromium driving the platform as it runs for real (the app, a
worker and the Stripe emulator as processes, from `tests.support.platform`), on a database and
Redis namespace of their own so no other worker provisions their instances.

Every page a test opens is watched: a console error or an uncaught exception on any of them
fails the test. Screenshots go to `$BROWSER_ARTIFACTS` (default `tests/browser/artifacts/`), and
the server times measured by `test_page_server_times` are printed at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from playwright.async_api import (
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Response,
    ViewportSize,
    expect,
)

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}  # a common phone, CSS pixels
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or Path(__file__).parent / "artifacts")
# Long enough to see an instance `provisioning` before it is `running`.
BOOT_SECONDS = (6.0, 9.0)
expect.set_options(timeout=10_000)  # ms; the machine running the tests is shared and small


@dataclass
class Problems:
    """Console errors and uncaught exceptions seen on any page of the test's contexts, and
    subresources (scripts, styles, icons, htmx requests) that failed.

    A page answered with an error status on purpose (the login page's 401 for a wrong
    password, the checkout page's 402 for a declined card) makes Chromium log "Failed to load
    resource" for the document itself; the tests check those statuses where they matter, so
    that message is not counted for a document, only for anything the page loads."""

    seen: list[str] = field(default_factory=list)
    documents: set[str] = field(default_factory=set)  # URLs of documents answered 4xx/5xx

    def watch(self, page: Page) -> None:
        def on_response(response: Response) -> None:
            if response.status >= 400:
                if response.request.resource_type == "document":
                    self.documents.add(response.url)
                else:
                    self.seen.append(f"{response.status} for {response.url} on {page.url}")

        def on_console(message: ConsoleMessage) -> None:
            if message.type != "error":
                return
            source = message.location.get("url", "")
            if message.text.startswith("Failed to load resource") and source in self.documents:
                return
            self.seen.append(f"console error on {page.url} ({source}): {message.text}")

        def on_page_error(error: Error) -> None:
            self.seen.append(f"uncaught exception on {page.url}: {error}")

        page.on("response", on_response)
        page.on("console", on_console)
        page.on("pageerror", on_page_error)


class NewContext(Protocol):
    """Opens a watched browser context; `bypass_csp` lets a test inject a script of its own
    (axe-core) into pages whose Content-Security-Policy refuses inline scripts."""

    def __call__(self, *, bypass_csp: bool = False) -> Awaitable[BrowserContext]: ...


# Screenshots ----------------------------------------------------------------------------------


async def screenshot(page: Page, name: str) -> None:
    """Full-page screenshots of the page as it is, in the dark and the light theme
    (`<name>-dark.png`, `<name>-light.png` in `ARTIFACTS`, created as needed); the page's
    theme is left as it was."""
    toggle = "light => document.documentElement.classList.toggle('light', light)"
    was_light = await page.evaluate("document.documentElement.classList.contains('light')")
    for theme in ("dark", "light"):
        await page.evaluate(toggle, theme == "light")
        await page.screenshot(path=ARTIFACTS / f"{name}-{theme}.png", full_page=True)
    await page.evaluate(toggle, was_light)


async def phone_screenshot(page: Page, name: str) -> None:
    """`screenshot` at the size of a phone (`<name>-phone-dark.png`, `<name>-phone-light.png`);
    the page's size is left as it was."""
    was = page.viewport_size
    await page.set_viewport_size(PHONE)
    await screenshot(page, f"{name}-phone")
    if was is not None:
        await page.set_viewport_size(was)


# Server times ---------------------------------------------------------------------------------

TIMINGS: dict[str, tuple[float, float]] = {}  # page → (median, p95) in ms, filled by a test
