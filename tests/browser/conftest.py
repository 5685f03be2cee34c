"""A real browser for the dashboard's tests: Debian's chromium driven by Playwright.

Playwright's own browser download is never used: ``executable_path`` names the system
chromium (``deploy/dev/test.sh`` installs it), headless with no GPU and no background
traffic. Every page is loaded with the network cut off except the loopback address, so
a script, style or font fetched from anywhere else fails the test. Screenshots are kept
under ``test-artifacts/screenshots`` (ignored by git; ``HPO_TEST_SCREENSHOTS`` moves it).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, Route, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 240_000
"""Playwright's waits give up only after this; the test's own timeout comes first."""


def _chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"no {CHROMIUM}: install Debian's chromium (sudo apt-get install -y chromium), "
            "or run the suite with deploy/dev/test.sh, which does",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(_chromium()), args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


class OfflinePage:
    """A page whose every request leaves the machine only for 127.0.0.1; the others
    are refused and recorded in ``outside``, and page errors in ``errors``."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []

    async def start(self) -> None:
        await self.page.route("**/*", self._route)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        self.requests.append(request.url)

    async def _route(self, route: Route) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith("data:") or host == "127.0.0.1":
            await route.continue_()
        else:
            self.outside.append(url)
            await route.abort()


@pytest.fixture
async def offline(browser: Browser) -> AsyncIterator[OfflinePage]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = OfflinePage(await context.new_page())
    await page.start()
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("HPO_TEST_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
    where = root / re.sub(r"[^\w.-]+", "_", request.node.name)
    where.mkdir(parents=True, exist_ok=True)
    return where
