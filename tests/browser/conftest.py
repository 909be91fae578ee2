"""Chromium driving the platform as it runs for real: the app, a worker and the Stripe emulator
as processes (`running_platform`, shared with the payment tests), on a database and Redis
namespace of their own so no other worker provisions their instances.

Every page a test opens is watched: a console error or an uncaught exception on any of them
fails the test. Screenshots go to `$BROWSER_ARTIFACTS` (default `tests/browser/artifacts/`), and
the server times measured by `test_page_server_times` are printed at the end of the run."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Response,
    ViewportSize,
    async_playwright,
    expect,
)

from computebill.config import Settings
from tests.support.database import own_database
from tests.support.platform import Platform, running_platform

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or Path(__file__).parent / "artifacts")
# Long enough to see an instance `provisioning` before it is `running`.
BOOT_SECONDS = (6.0, 9.0)
expect.set_options(timeout=10_000)  # ms; the machine running the tests is shared and small


@pytest.fixture(scope="session")
async def live_settings(
    settings: Settings, service_urls: tuple[str, str]
) -> AsyncIterator[Settings]:
    async with own_database(settings, service_urls[0]) as own:
        yield own


@pytest.fixture(scope="session")
def live(live_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The app (its PUBLIC_BASE_URL its own address, so Stripe's success and cancel URLs lead
    back to it), a worker booting instances in 6–9 s, and the emulator."""
    with running_platform(
        live_settings,
        tmp_path_factory.mktemp("browser-platform"),
        simulated_boot_min_seconds=BOOT_SECONDS[0],
        simulated_boot_max_seconds=BOOT_SECONDS[1],
    ) as platform:
        yield platform


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium (never a downloaded one), driven by Playwright's async API on the
    session's event loop (the sync API would hold that loop as its own)."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless=new", "--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()


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


NewContext = Callable[[], Awaitable[BrowserContext]]


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
async def new_context(
    chromium: Browser, live: Platform, problems: Problems
) -> AsyncIterator[NewContext]:
    """Opens browser contexts (each one a separate browser: its own cookies and storage) whose
    pages are all watched for console errors; the test fails if any page had one."""
    contexts: list[BrowserContext] = []

    async def open_context() -> BrowserContext:
        context = await chromium.new_context(base_url=live.base_url, viewport=VIEWPORT)
        context.set_default_timeout(15_000)
        context.on("page", problems.watch)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        await context.close()
    assert not problems.seen, "\n".join(problems.seen)


@pytest.fixture
async def page(new_context: NewContext) -> Page:
    context = await new_context()
    return await context.new_page()


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


# Server times ---------------------------------------------------------------------------------

TIMINGS: dict[str, tuple[float, float]] = {}  # page → (median, p95) in ms, filled by a test


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("page server times (20 warm GETs each, 127.0.0.1)")
    terminalreporter.write_line(f"{'page':<28}{'median ms':>10}{'p95 ms':>10}")
    for path, (median, p95) in TIMINGS.items():
        terminalreporter.write_line(f"{path:<28}{median:>10.1f}{p95:>10.1f}")
