"""The README's screenshot of ``minivae explore``: the page over a run, in headless Chromium.

    python examples/explore_screenshot.py RUN_DIR [--out examples/results/explore.png]

Serves RUN_DIR as ``minivae explore`` does, opens the page in Debian's chromium through its
chromedriver (Selenium never downloads a browser: SE_OFFLINE), moves the latent point, picks
a test image and saves a screenshot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading

from minivae.explore import Explorer, make_server, run_metrics
from minivae.training.trainer import load_data, load_run


def main(run_dir: str, out: str = "examples/results/explore.png", index: int = 7) -> str:
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config, model, _ = load_run(run_dir)
    _, test = load_data(config)
    server = make_server(Explorer(config, model, test, run_dir=run_dir, metrics=run_metrics(run_dir)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1700"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        ActionChains(driver).move_to_element_with_offset(driver.find_element(By.ID, "plane"), 60, -80).click().perform()
        driver.find_element(By.CSS_SELECTOR, f"#thumbs img[data-index='{index}']").click()
        wait.until(lambda d: d.find_element(By.ID, "index").get_attribute("value") == str(index))
        wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
        driver.save_screenshot(out)
    finally:
        driver.quit()
        server.shutdown()
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="examples/results/explore.png")
    parser.add_argument("--index", type=int, default=7, help="the test image to pick")
    args = parser.parse_args()
    main(args.run_dir, args.out, args.index)
