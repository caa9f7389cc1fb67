"""Driving the Gradio demo in a real browser: Debian's headless Chromium through selenium.

Used by tests/demo/test_demo.py, and to refresh the README's screenshot:

    python tests/demo/browser.py --model FOLDER --image IMAGE --screenshot docs/images/demo_app.png
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


REPO = Path(__file__).parents[2]


def browser_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_app(model: str, port: int, log_path: Path) -> subprocess.Popen:
    """`python app.py --model MODEL` on 127.0.0.1:PORT, returned once it answers HTTP (or failing with its log)."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "app.py"), "--model", str(model), "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"app.py did not answer within 180 s:\n{log_path.read_text()}")


def chromium_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def labels_on_page(driver, url: str, image: Path, screenshot: Path | None = None, timeout: float = 120) -> dict:
    """Upload `image` on the app's page, press Submit and read back {label: score} from the labels output
    (the names as shown, the scores from the bars); optionally save a screenshot of the answered page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(Path(image).resolve()))
    time.sleep(1.0)  # let the upload land before submitting
    wait.until(expected_conditions.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Submit']"))).click()
    rows = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='label'] .confidence-set") or False)
    answer = {}
    for row in rows:  # each label: its name as text, its score in the bar's value
        name = row.find_element(By.CSS_SELECTOR, ".text").text.strip()
        answer[name] = float(row.find_element(By.TAG_NAME, "meter").get_attribute("value"))
    if screenshot is not None:
        time.sleep(1.0)  # the overlay image arrives with the labels
        driver.save_screenshot(str(screenshot))
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description="Screenshot the demo app answering one image.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--screenshot", required=True, type=Path)
    args = parser.parse_args()
    from modeling_q2l.extras import MissingExtraError, require

    try:
        require("selenium", "Driving the demo in a browser")
    except MissingExtraError as error:
        raise SystemExit(f"error: {error}") from None
    port = free_port()
    server = serve_app(args.model, port, args.screenshot.with_suffix(".log"))
    driver = chromium_driver()
    try:
        print(labels_on_page(driver, f"http://127.0.0.1:{port}/", args.image, args.screenshot))
    finally:
        driver.quit()
        server.terminate()


if __name__ == "__main__":
    main()
