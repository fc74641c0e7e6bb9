"""The whole platform as a user gets it (``python -m storepulse_local.platform up`` on free ports)
and a real headless Chromium to look at it.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright for Python: a browser that
Playwright would download cannot be fetched here. Tests are skipped when either is missing.
The flags keep Chromium off the network (only loopback answers on this machine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.platform_process import Platform

CHROMIUM = Path(os.environ.get("STOREPULSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies): a new user each test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def log_in(page: Any, platform: Platform, password: str, next_path: str = "/dashboard/") -> None:
    """Through Airflow's own login page, as a person would."""
    page.goto(f"{platform.url}/auth/login?next={platform.url}{next_path}")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{platform.url}{next_path}*")
