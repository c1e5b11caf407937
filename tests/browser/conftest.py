"""The browser: Debian's Chromium, started once for the folder, and a page of the real server for each test."""

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


# Without the networking flags Chromium keeps dialling Google, and this machine's closed network refuses it.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: `make test` installs it (apt-get install -y chromium)")
    with sync_playwright() as p:
        # Playwright gives every launch a fresh temporary user-data dir of its own.
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 900}, base_url=server)
    page = context.new_page()
    page.goto("/upload")
    yield page
    context.close()
