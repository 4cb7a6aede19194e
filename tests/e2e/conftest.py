"""Fixtures of the end-to-end tests: a headless Chromium per module and, per test, a
page that fails the test if anything reached the browser's console as an error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.browser import launch, watched_page
from tests.harness import Receiver


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: while Playwright's sync API is running, asyncio.run()
    fails in this thread, and later tests of the session use it."""
    yield from launch()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with watched_page(browser) as (tab, problems):
        yield tab
        errors = list(problems.errors)
    assert not errors, "the page logged errors:\n" + "\n".join(errors)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver on 127.0.0.1 for one test."""
    r = Receiver()
    yield r
    r.close()
