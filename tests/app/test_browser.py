"""A session of the rating app played by clicking in a real headless browser (Debian's chromium and its driver).

The page seen at turn 2 is saved as a test artefact,
``results/test-artifacts/serve_turn2.png``.
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

ARTIFACTS = Path(__file__).resolve().parents[2] / "results" / "test-artifacts"


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
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=options)
    b.set_page_load_timeout(60)
    yield b
    b.quit()


def test_a_session_played_by_clicking_is_recorded_as_clicked(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)  # each click loads a new page: wait for it, not for a fixed time
    data = tmp_path / "data"
    server = Server(data, "--raters", "1", "--agent", "bayes", command=SERVE)
    try:
        browser.get(server.links["rater-0001"])  # the invite link sets the cookie and lands on the start page
        box = browser.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys("a lighthouse at dusk, <i>stormy</i>")
        start = browser.find_element(By.ID, "start")
        start.click()
        wait.until(ec.staleness_of(start))
        clicked, seen = [], []
        answers = ["better", "same", "worse", "better"]
        for t in range(5):
            wait.until(lambda b, t=t: f"Turn {t + 1} of 5" in b.page_source)
            seen.append([e.text for e in browser.find_elements(By.CSS_SELECTOR, ".card")])
            answer = None
            if t >= 1:
                answer = answers[t - 1]
                browser.find_element(By.ID, f"answer-{answer}").click()
            if t == 1:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(ARTIFACTS / "serve_turn2.png"))
            column = (2 * t + 1) % 4
            button = browser.find_element(By.ID, f"choose-{column}")
            button.click()
            wait.until(ec.staleness_of(button))
            clicked.append((t, column, answer.capitalize() if answer else None))
        wait.until(ec.presence_of_element_located((By.ID, "finished")))
        assert "&lt;i&gt;stormy&lt;/i&gt;" in browser.page_source  # the request shown as typed, escaped
    finally:
        server.kill()
    records = [json.loads(line) for line in (data / "choices.jsonl").read_text().splitlines()]
    assert [(r["turn"], r["chosen"], r["answer"]) for r in records] == clicked
    assert [r["prompts"] for r in records] == seen  # the cards shown are the prompts recorded
    assert {r["initial_prompt"] for r in records} == {"a lighthouse at dusk, <i>stormy</i>"}
    assert (ARTIFACTS / "serve_turn2.png").stat().st_size > 5000
