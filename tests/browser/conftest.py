"""Fixtures of the browser tests: the platform, Chromium, and watched browser contexts
(tests/browser/chromium.py holds what they use)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    async_playwright,
)
from pydantic import SecretStr

from computebill.config import MailBackend, Settings
from computebill.devserver.embedded import EmbeddedMailCatcher, free_port
from tests.browser.chromium import (
    BOOT_SECONDS,
    CHROMIUM,
    HAVE_CHROMIUM,
    TIMINGS,
    VIEWPORT,
    NewContext,
    Problems,
)
from tests.support.database import own_database
from tests.support.platform import Platform, running_platform


@pytest.fixture(scope="session")
async def live_settings(
    settings: Settings, service_urls: tuple[str, str]
) -> AsyncIterator[Settings]:
    async with own_database(settings, service_urls[0]) as own:
        yield own


@pytest.fixture(scope="session")
def live(live_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The app (its PUBLIC_BASE_URL its own address, so Stripe's success and cancel URLs lead
    back to it), a worker booting instances in 6–9 s and looking for auto-recharges every 2 s,
    the emulator, and the SMTP catcher of `computebill up`: e-mail goes out over SMTP, as in
    production, and the caught messages are at /_dev/mail."""
    base = tmp_path_factory.mktemp("browser-platform")
    catcher = EmbeddedMailCatcher(base / "mail", free_port())
    catcher.start()
    try:
        with running_platform(
            live_settings,
            base,
            simulated_boot_min_seconds=BOOT_SECONDS[0],
            simulated_boot_max_seconds=BOOT_SECONDS[1],
            auto_recharge_check_seconds=2,
            mail_backend=MailBackend.SMTP,
            smtp_url=SecretStr(catcher.url),
            dev_mail_dir=str(catcher.directory),
        ) as platform:
            yield platform
    finally:
        catcher.stop()


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

    async def open_context(*, bypass_csp: bool = False) -> BrowserContext:
        context = await chromium.new_context(
            base_url=live.base_url, viewport=VIEWPORT, bypass_csp=bypass_csp
        )
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("page server times (20 warm GETs each, 127.0.0.1)")
    terminalreporter.write_line(f"{'page':<28}{'median ms':>10}{'p95 ms':>10}")
    for path, (median, p95) in TIMINGS.items():
        terminalreporter.write_line(f"{path:<28}{median:>10.1f}{p95:>10.1f}")
