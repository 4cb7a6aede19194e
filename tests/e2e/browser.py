"""A real browser for the portal page tests: Debian's Chromium (/usr/bin/chromium, from
.ci/install-chromium) driven headless by Playwright. Playwright's own browser download is
never used. A page records every console error and uncaught page error, so a test fails on
any of them: the portal must run clean under its Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")


def launch() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make browser` (.ci/install-chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Problems:
    """What went wrong in the page, as the browser's developer console would show it."""

    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location.get('url')}")

    def page_error(self, error: Error) -> None:
        self.errors.append(f"page error: {error}")


@contextmanager
def watched_page(browser: Browser) -> Iterator[tuple[Page, Problems]]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    problems = Problems()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    try:
        yield page, problems
    finally:
        context.close()
