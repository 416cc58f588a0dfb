"""The web page in a real browser (Debian's headless Chromium driven by Selenium, no download):
type a query and see result images load, drop an image and see results, classify. A screenshot is
saved (to $RETRIEVAL_SCREENSHOTS if set, else the test's temporary folder)."""

import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)

from retrieval import build_collection  # noqa: E402
from retrieval.serve.server import create_app  # noqa: E402

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tiny_data, fake_encoders, tmp_path):
    import uvicorn

    col = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "squares", **FAKE)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app({"squares": str(col)}), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


def wait_for(driver, predicate, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out; page says: {driver.find_element('id', 'error').text!r}")


def loaded_images(driver):
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid .result img')].filter(i => i.complete && i.naturalWidth > 0)"
        ".map(i => i.alt)")


def test_search_drop_and_classify_in_a_browser(server, browser, tiny_data, tmp_path):
    browser.get(server)
    wait_for(browser, lambda: browser.execute_script("return document.getElementById('collection').options.length"))
    box = browser.find_element("id", "q")
    box.send_keys("a blue square\n")
    alts = wait_for(browser, lambda: loaded_images(browser))
    assert alts[0] == "blue box"  # the corpus caption of the blue square, drawn from /items/ID/file
    wait_for(browser, lambda: "route relative" in browser.find_element("id", "plan").text)

    # drop an image: a real drop event carrying the file, built in the page
    red = Path(tiny_data["anchor_images"][0])
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const file = new File([bytes], 'red.png', {type: 'image/png'});
        const dt = new DataTransfer(); dt.items.add(file);
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    """, __import__("base64").b64encode(red.read_bytes()).decode())
    wait_for(browser, lambda: "image query 'red.png'" in browser.find_element("id", "status").text)
    alts = wait_for(browser, lambda: loaded_images(browser))
    assert alts[0] == "red box"

    browser.find_element("id", "labels").clear()
    browser.find_element("id", "labels").send_keys("red, green, blue")
    browser.find_element("id", "cfile").send_keys(str(red))
    browser.find_element("id", "classify").click()
    result = wait_for(browser, lambda: browser.find_element("id", "cresult").text)
    assert re.fullmatch(r"red  \d+%", result.splitlines()[0])  # the top label with its probability

    out = Path(os.environ.get("RETRIEVAL_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out / "page.png")) and (out / "page.png").stat().st_size > 1000


def test_errors_are_shown_on_the_page(server, browser):
    browser.get(server)
    wait_for(browser, lambda: browser.execute_script("return document.getElementById('collection').options.length"))
    browser.find_element("id", "go").click()  # empty query
    assert "non-empty text query" in wait_for(browser, lambda: browser.find_element("id", "error").text)


def test_describe_suggested_pictures_in_a_browser(tiny_data, fake_encoders, tmp_path, browser):
    import uvicorn

    for c in ("red", "green"):
        (tiny_data["root"] / "corpus" / f"{c}.txt").unlink()
    col = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "squares", **FAKE)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app({"squares": str(col)}, captions=True), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        wait_for(browser, lambda: srv.started)
        browser.get(f"http://127.0.0.1:{port}")
        wait_for(browser, lambda: browser.execute_script("return document.getElementById('collection').options.length"))
        browser.find_element("id", "suggest").click()
        boxes = wait_for(browser, lambda: browser.find_elements("css selector", "#grid input.caption"))
        assert len(boxes) == 2  # the two pictures without a caption
        boxes[0].send_keys("zork quux")
        browser.find_element("id", "apply").click()
        said = wait_for(browser, lambda: browser.find_element("id", "dresult").text.startswith("1 new") and
                        browser.find_element("id", "dresult").text)
        assert "7 items have a caption now" in said
        browser.find_element("id", "q").send_keys("zork quux\n")
        alts = wait_for(browser, lambda: loaded_images(browser))
        assert alts[0] == "zork quux"  # found first, by the caption just typed
    finally:
        srv.should_exit = True
        thread.join(5)
