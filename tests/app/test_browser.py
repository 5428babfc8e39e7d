"""The rating app in a real headless browser (Debian's chromium and its driver), at desktop and phone width.

A rater plays a whole session by clicking, at 1200x900 and on a 390x844
phone viewport; at each page every column must be reachable without
horizontal scrolling. The start page, a turn, the end page and the
organiser's dashboard are saved at both sizes as test artefacts under
``results/test-artifacts/``; with ``PASTA_DOCS_SCREENSHOTS=1`` they are also
written to ``docs/app/`` (the screenshots the documentation shows).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("selenium")
pytest.importorskip("fastapi")

from pasta_app.simulated import Server  # noqa: E402

SERVE = [sys.executable, "-m", "pasta_cli.main", "serve"]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "results" / "test-artifacts"
DOCS = ROOT / "docs" / "app"
SIZES = {"desktop": (1200, 900), "phone": (390, 844)}


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromedriver (.ci/run installs Debian's chromium and chromium-driver)")
        pytest.skip("no chromium/chromedriver here (apt install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900",
                "--disable-gpu", "--no-first-run", "--disable-extensions", "--hide-scrollbars"):
        options.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=options)
    b.set_page_load_timeout(60)
    yield b
    b.quit()


def size(browser, name: str) -> None:
    """Make the viewport the named size (a phone: mobile emulation, as the phone's browser lays pages out)."""
    width, height = SIZES[name]
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": name == "phone"})


def no_sideways_scroll(browser) -> None:
    """The page is no wider than the viewport and every column (and its button) lies within it."""
    view = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth];")
    assert view[1] <= view[0], f"the page is {view[1]} px wide in a {view[0]} px viewport"
    boxes = browser.execute_script(
        "return Array.from(document.querySelectorAll('.column, .column button, #prompt, .last'))"
        ".map(e => {const r = e.getBoundingClientRect(); return [e.id || e.className, r.left, r.right];});")
    for name, left, right in boxes:
        assert left >= 0 and right <= view[0] + 0.5, f"{name} spans {left:.0f}-{right:.0f} px of {view[0]}"


def shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    assert (ARTIFACTS / f"{name}.png").stat().st_size > 5000
    if os.environ.get("PASTA_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")


@pytest.mark.parametrize("device", list(SIZES))
def test_a_session_played_by_clicking_is_recorded_as_clicked_and_fits_the_screen(browser, tmp_path, device):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # Each click loads a new page: wait for it, not for a fixed time (an element asked about while the page
    # is being replaced may answer with an inspector error: ask again).
    wait = WebDriverWait(browser, 60, ignored_exceptions=(WebDriverException,))
    size(browser, device)
    data = tmp_path / "data"
    server = Server(data, "--agent", "bayes", command=SERVE, raters=1)
    try:
        browser.get(server.links["rater-0001"])  # the invite link sets the cookie and lands on the start page
        box = browser.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys("a lighthouse at dusk, <i>stormy</i>")
        no_sideways_scroll(browser)
        shot(browser, f"start_{device}")
        start = browser.find_element(By.ID, "start")
        start.click()
        wait.until(ec.staleness_of(start))
        clicked, seen = [], []
        answers = ["better", "same", "worse", "better"]
        for t in range(5):
            wait.until(lambda b, t=t: f"Turn {t + 1} of 5" in b.page_source)
            no_sideways_scroll(browser)
            seen.append([e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card")])
            answer = None
            if t >= 1:
                last = browser.find_element(By.CSS_SELECTOR, ".lastcard").text
                assert last == seen[t - 1][clicked[-1][1]]  # the last choice is shown beside the question
                answer = answers[t - 1]
                browser.find_element(By.ID, f"answer-{answer}").click()
            if t == 1:
                shot(browser, f"turn_{device}")
            column = (2 * t + 1) % 4
            button = browser.find_element(By.ID, f"choose-{column}")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
            button.click()
            wait.until(ec.staleness_of(button))
            clicked.append((t, column, answer.capitalize() if answer else None))
        wait.until(ec.presence_of_element_located((By.ID, "finished")))
        assert "&lt;i&gt;stormy&lt;/i&gt;" in browser.page_source  # the request shown as typed, escaped
        code = browser.find_element(By.ID, "code").text
        no_sideways_scroll(browser)
        shot(browser, f"end_{device}")
        browser.get(server.links["admin"])
        switch = browser.find_element(By.ID, "switch")  # signed in as the rater: asked before switching
        switch.click()
        wait.until(ec.presence_of_element_located((By.ID, "raters")))
        assert code in browser.page_source  # the organiser can match the rater's completion code
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;")
        shot(browser, f"dashboard_{device}")
    finally:
        server.kill()
    records = [json.loads(line) for line in (data / "choices.jsonl").read_text().splitlines()]
    assert [(r["turn"], r["chosen"], r["answer"]) for r in records] == clicked
    assert [r["prompts"] for r in records] == seen  # the cards shown are the prompts recorded
    assert {r["initial_prompt"] for r in records} == {"a lighthouse at dusk, <i>stormy</i>"}
