"""The job page screenshot in Chromium shows the progress bar, chart and failures of a real
job: HTTP API -> a real Celery worker -> an S3 server (rclone), the page opened in headless
Chromium (Debian's chromium + chromium-driver, driven by selenium) while the job runs."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.client import BayportClient
from devstack.sample import label_key, populate
from tests.conftest import unavailable
from tests.support import register_s3_pair, seed_manifest

N = 60
FLOWER = "http://127.0.0.1:5555"
MANIFEST = seed_manifest(shard_size=10, concurrency=4, missing_label="fail")
# The page's colours (api/static/job.css): the progress bar, the chart's bars, failures.
GREEN, BLUE, RED = (0x2E, 0x9E, 0x5B), (0x3B, 0x76, 0xD6), (0xD6, 0x45, 0x45)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        unavailable("Chromium and its driver are needed: apt-get install chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is needed: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:
        unavailable(f"Chromium would not start: {exc}")
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _colour_pixels(png: Path, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        return sum(
            n
            for n, pixel in rgb.getcolors(maxcolors=1 << 24) or []
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))
        )


@pytest.mark.timeout(60)
def test_job_page_shows_progress_chart_and_failures(  # type: ignore[no-untyped-def]
    stack_factory, s3_buckets, browser, tmp_path: Path, monkeypatch
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # An operator's Flower URL, as deployments had it for the page's former links.
    monkeypatch.setenv("BAYPORT_FLOWER_URL", FLOWER)
    started = time.monotonic()
    with stack_factory() as stack:
        source = s3_buckets["source"]
        populate(source, N)
        source.delete(label_key(12))  # label_missing
        source.put(label_key(7), b"{corrupt")  # label_invalid
        client = BayportClient(stack.url, stack.access_key)
        register_s3_pair(client, s3_buckets)
        job_id = client.submit(MANIFEST)["id"]

        # Opened at once: the page follows the running job over the events stream. The key
        # travels in the fragment, which the browser never sends to the server.
        browser.get(f"{stack.url}/jobs/{job_id}#key={stack.access_key}")
        WebDriverWait(browser, 40, poll_frequency=0.2).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "final"
        )
        assert "#key=" not in browser.current_url  # taken out of the address bar
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, max(1000, int(height) + 40))
        shot = tmp_path / "job_page.png"
        assert browser.save_screenshot(str(shot))

        bar, ok, failed = browser.execute_script(
            "return ['bar', 'bar-ok', 'bar-failed']"
            ".map((id) => document.getElementById(id).getBoundingClientRect().width)"
        )
        body = browser.find_element(By.TAG_NAME, "body")
        text = body.text
        job = client.job(job_id)
        client.close()
    print(f"screenshot: {shot} ({time.monotonic() - started:.1f} s)")

    # The DOM after the script ran: state, figures, the chart, the failures with reasons.
    assert job["state"] == "partially_failed"
    assert body.get_attribute("data-state") == "partially_failed"
    assert "partially failed" in text.lower()
    assert f"{N} of {N} (100.0%)" in text
    assert "average rate" in text.lower()
    assert browser.find_element(By.ID, "bar").get_attribute("aria-valuenow") == "100"
    # The bar is full: done in green, the 2 failures of 60 in red.
    assert ok + failed == pytest.approx(bar, abs=1.5)
    assert failed == pytest.approx(bar * 2 / N, abs=1.5)
    for kind in ("chart-done", "chart-failed"):  # bars of objects/s, failures in red
        bars = browser.find_elements(By.CSS_SELECTOR, f"#chart svg#throughput rect.{kind}")
        assert bars and all(b.size["width"] > 0 and b.size["height"] > 0 for b in bars), kind
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
    ]
    assert sorted((r[0], r[1]) for r in rows) == [
        ("data/images/00007.png", "label_invalid"),
        ("data/images/00012.png", "label_missing"),
    ]
    reasons = " ".join(r[2] for r in rows)
    assert "not valid JSON" in reasons and "label file is missing" in reasons
    # The job's own tasks (not a link to Flower, which shows every workspace's): the
    # listing and each shard's copy, all done, each with the task that ran it.
    assert not browser.find_elements(By.CSS_SELECTOR, "a[href*='5555'], #flower")
    tasks = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    ]
    assert [t[0] for t in tasks] == ["listing"] + [f"shard {i} (copy)" for i in range(N // 10)]
    assert all(t[1] == "done" for t in tasks)
    assert all(t[4] not in ("", "–") for t in tasks[1:])  # the task id
    assert f"{N // 10} shard(s): {N // 10} done" in browser.find_element(By.ID, "tasks-note").text

    # The screenshot is not blank: the bar's green, the chart's blue, the failures' red.
    assert shot.stat().st_size > 10_000
    assert _colour_pixels(shot, GREEN) > 0.9 * (bar * 58 / N) * 20  # the bar: 22 px high
    assert _colour_pixels(shot, BLUE) > 200
    assert _colour_pixels(shot, RED) > 100
