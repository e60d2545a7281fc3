"""Regenerate the README's dashboard screenshots from the `combo` sample.

Replays samples/combo.pcap into a temporary store with `fabricscope replay`, serves it with `fabricscope
dashboard --history`, and saves each view as docs/screenshots/<view>.png through headless Chromium.
Run from the repository root: .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
OUT = ROOT / "docs" / "screenshots"
VIEWS = ("fabric", "ecmp", "congestion", "recovery", "flows")
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
SETTLE_S = 6.0


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = str(Path(tmp) / "store")
        subprocess.run([*FABRICSCOPE, "replay", str(SAMPLES / "combo.pcap"), "--counters",
                        str(SAMPLES / "combo.counters.jsonl"), "--topology", str(SAMPLES / "topology.yaml"),
                        "--no-progress", "--data-dir", data_dir], check=True, cwd=ROOT)
        server = subprocess.Popen([*FABRICSCOPE, "dashboard", "--port", "0", "--history", "--data-dir", data_dir,
                                   "--topology", str(SAMPLES / "topology.yaml")], stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT)
        try:
            assert server.stderr is not None
            url = server.stderr.readline().split(" on ")[1].split()[0]
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             f"--user-data-dir={Path(tmp) / 'chromium'}", "--window-size=1600,1200"):
                options.add_argument(argument)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            try:
                driver.get(f"{url}/?range=1m")
                time.sleep(SETTLE_S)
                for view in VIEWS:
                    section = driver.find_element(By.ID, view)
                    driver.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -140);", section)
                    time.sleep(0.5)
                    section.screenshot(str(OUT / f"{view}.png"))
            finally:
                driver.quit()
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
