"""The real dashboard in headless Chromium.

On a store holding a link-failure minute of the sample fabric, one test drives the page as an engineer
would (map, failure, click a link, flows filtered) and saves a screenshot of every view under
test-artifacts/dashboard/; another opens a hostile URL. A third replays samples/link_failure.pcap with
`fabricscope replay` and serves it with `fabricscope dashboard`, both as a user runs them, and checks the
failure and its convergence against the sample's ground truth. Two more open the packets view from an
incident and a flow row (the link-down silence, CE marks) and check the pcap download against the login
and against `fabricscope packets --event ID --out`.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import parse_qs, quote, urlparse
from urllib.request import Request, urlopen

import pandas as pd
import pytest
from chromium import headless_chromium
from dashboard_fabric import BACKUP_LINK, FAILED_LINK, REMOTE_MS, Fabric, fill, topology
from requirements import require
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from bench import dashboard as bench_dashboard
from dashboards.app import dashboard_server
from dashboards.layout import PACKETS_LINK
from dashboards.packets import VIEW_ROWS
from pipeline.store import Store
from simulator import fabric as simulated
from simulator.scenario import FabricSpec

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
WAIT_S = 60
# a packets view waits for its slice dissected in a process of its own, killed and started again when it hangs
# for fabricscope.packet_source.DISSECT_TIMEOUT_S (60 s): in the fresh-clone suite one hung past WAIT_S
DISSECT_WAIT_S = 180
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
CONVERGENCE_TOLERANCE_MS = 0.05
VIEWS = ("fabric", "ecmp", "congestion", "recovery", "flows")
TOKEN = "browser-test-token-0123456789"
GAP_BACKGROUND = "rgb(253, 235, 208)"  # dashboards.layout.PACKET_ROW_STYLES: a silence
CE_BACKGROUND = "rgb(252, 243, 207)"  # and a CE mark


@pytest.fixture
def dashboard(store: Store) -> Iterator[tuple[str, Fabric]]:
    fabric = fill(store)
    server = dashboard_server(store, topology(), host="127.0.0.1", port=0).start()
    yield server.url, fabric
    server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with headless_chromium(tmp_path / "chromium") as driver:
        yield driver


def _graph_data(driver: webdriver.Chrome, graph_id: str) -> list[dict[str, Any]]:
    return driver.execute_script(
        "const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return gd && gd.data ? gd.data.map(t => ({name: t.name, meta: t.meta || null, text: t.text || null,"
        " customdata: t.customdata ? Array.from(t.customdata) : null})) : [];",
        f"#{graph_id}",
    )


def _shape_names(driver: webdriver.Chrome, graph_id: str) -> list[str]:
    return driver.execute_script(
        "const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return gd && gd.layout && gd.layout.shapes ? gd.layout.shapes.map(s => s.name || '') : [];", f"#{graph_id}")


def _map_links(driver: webdriver.Chrome) -> dict[str, str]:
    return {t["meta"]["link"]: t["meta"]["status"] for t in _graph_data(driver, "fabric-map") if t["meta"]}


def _column(driver: webdriver.Chrome, table_id: str, column: str) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(cell => cell.textContent);",
        f"#{table_id} td[data-dash-column='{column}']",
    )


def _severe_logs(driver: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _click_link(driver: webdriver.Chrome, link: str) -> None:
    """Click the link's label marker on the map with the mouse, as a person would."""
    point = driver.execute_script(
        "const gd = document.querySelector('#fabric-map .js-plotly-plot');"
        "const index = gd.data.findIndex(t => t.name === 'links');"
        "const position = Array.from(gd.data[index].customdata).indexOf(arguments[0]);"
        "return gd.querySelectorAll('.scatterlayer .trace')[index].querySelectorAll('.point')[position];",
        link,
    )
    ActionChains(driver).move_to_element(point).pause(0.3).click().perform()


def _url_link(driver: webdriver.Chrome) -> list[str] | None:
    return parse_qs(urlparse(driver.current_url).query).get("link")


def _click_until(driver: webdriver.Chrome, link: str, expected: list[str] | None, attempts: int = 5) -> None:
    """Click the link on the map until the URL's link filter becomes `expected`: a click that lands while
    Plotly is still redrawing the map is lost, as it would be for a person, who would click again; a marker
    replaced by the redraw between finding and clicking it is found again."""
    for _ in range(attempts):
        try:
            _click_link(driver, link)
            WebDriverWait(driver, 5).until(lambda d: _url_link(d) == expected)
            return
        except (TimeoutException, StaleElementReferenceException):
            continue
    raise AssertionError(f"clicking {link} never set the link filter to {expected}")


def test_map_failure_and_a_clicked_link_filtering_the_flows(
    dashboard: tuple[str, Fabric], browser: webdriver.Chrome, tmp_path: Path
) -> None:
    url, _ = dashboard
    browser.get(f"{url}/?range=5m")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: len(_map_links(d)) == len(topology().links))
    links = _map_links(browser)
    assert set(links) == set(topology().link_ids())
    assert links[FAILED_LINK] == "down"
    assert links[BACKUP_LINK] != "down"

    wait.until(lambda d: FAILED_LINK in _column(d, "recovery-table", "link"))
    assert _column(browser, "recovery-table", "convergence_ms") == [str(REMOTE_MS)]
    timeline = [t for t in _graph_data(browser, "recovery-timeline") if t["name"] == "convergence"]
    assert timeline[0]["text"] == [f"{FAILED_LINK} {REMOTE_MS:.3f} ms"]
    wait.until(lambda d: any(t["name"] == f"on {BACKUP_LINK}" for t in _graph_data(d, "recovery-flows")))
    flow_traces = {t["name"] for t in _graph_data(browser, "recovery-flows")}
    assert {f"on {FAILED_LINK}", f"on {BACKUP_LINK}"} <= flow_traces

    wait.until(lambda d: len(set(_column(d, "flow-table", "link"))) > 1)
    _click_until(browser, "leaf3-spine1", ["leaf3-spine1"])
    wait.until(lambda d: set(_column(d, "flow-table", "link")) == {"leaf3-spine1"})
    assert "leaf3-spine1" in browser.find_element(By.ID, "flow-query").get_attribute("textContent")
    counts = _column(browser, "flow-table", "packets")
    assert counts and all(count.isdigit() and int(count) > 0 for count in counts), counts
    # Export: the table as CSV, every row and column as shown.
    downloads = tmp_path / "chromium" / "downloads"
    browser.find_element(By.CSS_SELECTOR, "#flow-table button.export").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: list(downloads.glob("*.csv")))
    exported = list(csv.DictReader(next(downloads.glob("*.csv")).open(encoding="utf-8")))
    assert [row["packets"] for row in exported] == counts and {row["link"] for row in exported} == {"leaf3-spine1"}

    _click_until(browser, "leaf3-spine1", None)
    wait.until(lambda d: len(set(_column(d, "flow-table", "link"))) > 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h2")).perform()
    for view in VIEWS:
        section = browser.find_element(By.ID, view)
        browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -140);", section)
        section.screenshot(str(ARTIFACTS / f"{view}.png"))
    browser.save_screenshot(str(ARTIFACTS / "page.png"))

    # Search: a job's name finds it; following the result filters the flows by it.
    box = browser.find_element(By.ID, "search")
    box.send_keys("JOB-A", Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.LINK_TEXT, "job-a"))
    results = browser.find_element(By.ID, "search-results").text
    assert results.startswith("jobs: job-a") and "hosts" not in results, results
    browser.find_element(By.LINK_TEXT, "job-a").click()
    wait.until(lambda d: parse_qs(urlparse(d.current_url).query).get("job") == ["job-a"])
    wait.until(lambda d: set(_column(d, "flow-table", "job")) == {"job-a"})
    assert _severe_logs(browser) == []


def test_a_hostile_url_gives_the_default_view_and_touches_nothing(
    dashboard: tuple[str, Fabric], browser: webdriver.Chrome, store: Store
) -> None:
    url, _ = dashboard
    flows_before = store.query("SELECT count() FROM flows").rows
    hostile = ("link=%27%3B%20DROP%20TABLE%20flows%3B--&from=1970-01-01&to=2999-12-31T00%3A00%3A00&range=9999y"
               "&host=10.0.1.1%27%20OR%20%271%27%3D%271&port=99999999&app=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
               "&event=leaf1-spine1%40not-a-time&class=%00&job=x%27%29%20UNION%20SELECT%201--&metric=../../etc")
    browser.get(f"{url}/?{hostile}")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: len(_map_links(d)) == len(topology().links))
    wait.until(lambda d: "job=" in urlparse(d.current_url).query)
    query = parse_qs(urlparse(browser.current_url).query)
    assert set(query) == {"live", "job"}
    assert query["job"] == ["x') UNION SELECT 1--"]
    statuses = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".status")]
    assert all(text == "" for text in statuses)
    assert store.query("SELECT count() FROM flows").rows == flows_before
    assert _severe_logs(browser) == []


def _replay(name: str, data_dir: str) -> dict[str, Any]:
    """`fabricscope replay` of sample `name` into `data_dir`; its ground truth."""
    subprocess.run([*FABRICSCOPE, "replay", str(SAMPLES / f"{name}.pcap"), "--counters",
                    str(SAMPLES / f"{name}.counters.jsonl"), "--topology", str(SAMPLES / "topology.yaml"),
                    "--no-progress", "--data-dir", data_dir], check=True, capture_output=True, timeout=300)
    return dict(json.loads((SAMPLES / f"{name}.truth.json").read_text()))


def _replay_link_failure(data_dir: str) -> dict[str, Any]:
    """`fabricscope replay` of the link_failure sample into `data_dir`; its fast-recovery truth."""
    truth = _replay("link_failure", data_dir)
    return {**next(event for event in truth["events"] if event["kind"] == "fast_recovery"),
            "ecn_ce": truth["ecn_ce"]}


@contextmanager
def _served(data_dir: str, *options: str) -> Iterator[str]:
    """`fabricscope dashboard` on `data_dir` as a process of its own; its URL until the block ends."""
    server = subprocess.Popen([*FABRICSCOPE, "dashboard", "--port", "0", "--history", "--data-dir", data_dir,
                               "--topology", str(SAMPLES / "topology.yaml"), *options],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        assert "fabricscope dashboard on " in banner, banner
        yield banner.split(" on ")[1].split()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def link_failure_dashboard(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """`fabricscope replay` of the link_failure sample, then `fabricscope dashboard` on it, each a process."""
    data_dir = str(tmp_path / "fabricscope")
    failure = _replay_link_failure(data_dir)
    with _served(data_dir) as url:
        yield url, failure


def test_the_link_failure_sample_shows_its_failure_and_convergence(
    link_failure_dashboard: tuple[str, dict[str, Any]], browser: webdriver.Chrome
) -> None:
    url, failure = link_failure_dashboard
    truth = json.loads((SAMPLES / "link_failure.truth.json").read_text())
    capture_start = datetime.fromtimestamp(truth["start_us"] / 1e6, UTC)
    capture_end = capture_start + timedelta(milliseconds=truth["duration_ms"])
    browser.get(f"{url}/?live=1&range=5m")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: len(_map_links(d)) == len(topology().links))
    assert _map_links(browser)[failure["link"]] == "down"
    # A 260 ms capture from January fills the charts (its span, padded), and the page does not call it live.
    text = browser.find_element(By.ID, "window-text").text
    shown = re.fullmatch(r"(\S+ \S+) → (\S+) UTC · no data since .+ ago\)", text)
    assert shown is not None, text
    start = datetime.fromisoformat(shown[1]).replace(tzinfo=UTC)
    end = datetime.combine(start.date(), time.fromisoformat(shown[2]), UTC)
    assert capture_start - timedelta(milliseconds=10) <= start <= capture_start, text
    assert capture_end - timedelta(milliseconds=60) <= end <= capture_end + timedelta(milliseconds=10), text
    # Numbers as people read them: no exponent, bytes with SI prefixes, protocols by name, times to the ms in UTC.
    labels = next(t for t in _graph_data(browser, "fabric-map") if t["name"] == "links")["text"]
    assert all(re.fullmatch(r"DOWN|<?\d+(\.\d+)?%", label) for label in labels), labels
    wait.until(lambda d: _column(d, "flow-table", "bytes"))
    assert all(re.fullmatch(r"\d+(\.\d+)?[kMGT]?B", cell) for cell in _column(browser, "flow-table", "bytes"))
    assert set(_column(browser, "flow-table", "proto")) <= {"udp", "tcp", "icmp"}
    assert all(re.fullmatch(r"2026-01-15T12:00:00\.\d{3}Z", cell) for cell in _column(browser, "flow-table", "first"))
    axis = [pd.Timestamp(t) for t in browser.execute_script(
        "return document.querySelector('#recovery-timeline .js-plotly-plot').layout.xaxis.range;")]
    assert axis[1] - axis[0] < pd.Timedelta(seconds=1), axis  # it was the 5-minute range ending at the data
    wait.until(lambda d: failure["link"] in _column(d, "recovery-table", "link"))
    for column in ("local_convergence_ms", "remote_convergence_ms", "convergence_ms"):
        shown = float(_column(browser, "recovery-table", column)[0])
        assert shown == pytest.approx(failure[column], abs=CONVERGENCE_TOLERANCE_MS), column
    assert _column(browser, "recovery-table", "flows_affected") == [str(failure["flows_affected"])]
    wait.until(lambda d: f"on {failure['link']}" in {t["name"] for t in _graph_data(d, "recovery-flows")})
    moved_to = {t["name"] for t in _graph_data(browser, "recovery-flows")} - {f"on {failure['link']}"}
    assert moved_to, "the affected flows reappear on other links"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h2")).perform()
    for view in ("fabric", "recovery"):
        section = browser.find_element(By.ID, view)
        browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -140);", section)
        section.screenshot(str(ARTIFACTS / f"link_failure_sample_{view}.png"))
    # From a two-hour history window around the capture, "zoom to data" fits the window to its 260 ms.
    browser.get(f"{url}/?live=0&from=2026-01-15T11:00:00Z&to=2026-01-15T13:00:00Z")
    wait.until(lambda d: "11:00:00.000 → 13:00:00.000 UTC · history" in d.find_element(By.ID, "window-text").text)
    browser.find_element(By.ID, "zoom-data").click()
    wait.until(lambda d: not parse_qs(urlparse(d.current_url).query)["from"][0].startswith("2026-01-15T11:00"))
    query = parse_qs(urlparse(browser.current_url).query)
    zoomed = [datetime.fromisoformat(query[key][0]) for key in ("from", "to")]
    assert capture_start - timedelta(milliseconds=10) <= zoomed[0] <= capture_start, zoomed
    assert capture_end - timedelta(milliseconds=60) <= zoomed[1] <= capture_end + timedelta(milliseconds=10), zoomed
    wait.until(lambda d: d.find_element(By.ID, "window-text").text.endswith("· history")
               and "11:00:00.000" not in d.find_element(By.ID, "window-text").text)
    assert _severe_logs(browser) == []


def _cells(driver: webdriver.Chrome, table_id: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The table's rows as {column: text}."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr')).filter(r => r.querySelector('td'))"
        ".map(r => Object.fromEntries(arguments[1].map(c => {"
        " const cell = r.querySelector(`td[data-dash-column='${c}']`); return [c, cell ? cell.textContent : ''];})));",
        f"#{table_id}", list(columns),
    )


def _background(driver: webdriver.Chrome, table_id: str, row: int) -> str:
    return driver.execute_script(
        "const rows = Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
        ".filter(r => r.querySelector('td'));"
        "return getComputedStyle(rows[arguments[1]].querySelector('td')).backgroundColor;", f"#{table_id}", row)


def _wait_for_packets(driver: webdriver.Chrome) -> None:
    """Until the packets view lists its dissected packets."""
    WebDriverWait(driver, DISSECT_WAIT_S).until(lambda d: len(_column(d, "packets-table", "info")) > 1)


def _open_packets(driver: webdriver.Chrome, table_id: str, kind: str) -> None:
    """Click the first row's `packets` link until the page's URL names a packets view of `kind` (event or flow)."""
    _click_cell_link(driver, table_id, PACKETS_LINK, f"packets={kind}")


def _click_cell_link(driver: webdriver.Chrome, table_id: str, column: str, wanted: str, attempts: int = 5) -> None:
    """Click the first row's link in `column` until the page's URL holds `wanted`: a click that lands while Dash
    is re-rendering the table is lost, as it would be for a person, who would click again."""
    for _ in range(attempts):
        try:
            driver.find_element(By.CSS_SELECTOR, f"#{table_id} td[data-dash-column='{column}'] a").click()
            WebDriverWait(driver, 5).until(lambda d: wanted in urlparse(d.current_url).query)
            return
        except (TimeoutException, StaleElementReferenceException):
            continue
    raise AssertionError(f"clicking a {column} link of {table_id} never opened {wanted}")


def _frames(path: Path) -> list[tuple[int, bytes]]:
    """(time in ns, frame bytes) of every packet of a capture, read by our reader."""
    from collectors.pcapfile import open_capture

    frames = []
    with open_capture(path) as reader:
        for batch in reader:
            for at in range(len(batch)):
                start = int(batch.offset[at])
                frames.append((int(batch.ts_ns[at]), bytes(batch.data[start:start + int(batch.caplen[at])])))
    return frames


def test_the_failure_opens_its_packets_and_the_pcap_is_what_fabricscope_packets_cuts(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    require(shutil.which("tshark") is not None, "tshark is not installed (make test installs it)")
    data_dir = str(tmp_path / "fabricscope")
    failure = _replay_link_failure(data_dir)
    auth = tmp_path / "auth.yaml"
    auth.write_text(f'tokens:\n  - "{TOKEN}"\n')
    with _served(data_dir, "--auth", str(auth)) as url:
        browser.get(f"{url}/?token={TOKEN}&range=1m")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda d: failure["link"] in _column(d, "recovery-table", "link"))
        _open_packets(browser, "recovery-table", "event")
        _wait_for_packets(browser)
        rows = _cells(browser, "packets-table", ("link", "ecn", "aeth", "psn", "mark", "info"))
        packets = [row for row in rows if row["mark"] != "gap"]
        assert len(packets) == VIEW_ROWS
        assert {row["link"] for row in packets} == {failure["link"]}
        down = [at for at, row in enumerate(rows) if row["mark"] == "gap" and "link down" in row["info"]]
        assert len(down) == 1, [row["info"] for row in rows if row["mark"] == "gap"]
        assert _background(browser, "packets-table", down[0]) == GAP_BACKGROUND
        assert all(("CE" in row["mark"]) == (row["ecn"] == "CE") for row in packets)
        assert sum(row["ecn"] == "CE" for row in packets) <= failure["ecn_ce"]
        assert all(("NAK" in row["mark"]) == ("NAK" in row["aeth"]) for row in packets)
        section = browser.find_element(By.ID, "packets")
        browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -140);", section)
        browser.execute_script(  # the table scrolls inside the section: bring the link-down row into the shot
            "const rows = Array.from(document.querySelectorAll('#packets-table tbody tr'))"
            ".filter(r => r.querySelector('td')); const table = rows[0].closest('.dash-spreadsheet-container');"
            "table.scrollTop = rows[arguments[0]].offsetTop - table.clientHeight / 2;", down[0])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        section.screenshot(str(ARTIFACTS / "link_failure_sample_packets.png"))
        href = browser.find_element(By.ID, "packets-download").get_attribute("href")
        with pytest.raises(HTTPError) as refused:
            urlopen(href, timeout=WAIT_S)
        assert refused.value.code == 401
        with urlopen(Request(href, headers={"Authorization": f"Bearer {TOKEN}"}), timeout=WAIT_S) as answer:
            assert answer.headers["Content-Disposition"].startswith("attachment;")
            (tmp_path / "dashboard.pcapng").write_bytes(answer.read())

        flow_keys = ("link", "src", "src_port", "dst", "dst_port")
        wait.until(lambda d: len(_column(d, "flow-table", "link")) > 0)
        flow = _cells(browser, "flow-table", (*flow_keys, "ecn_ce", "psn_gaps", "cnp"))[0]
        _open_packets(browser, "flow-table", "flow")
        wait.until(lambda d: "flow " in browser.find_element(By.ID, "packets-summary").text)
        _wait_for_packets(browser)
        flow_packets = [row for row in _cells(browser, "packets-table", (*flow_keys, "mark")) if row["mark"] != "gap"]
        assert flow_packets and all({key: row[key] for key in flow_keys} == {key: flow[key] for key in flow_keys}
                                    for row in flow_packets)
        assert (flow["ecn_ce"], flow["psn_gaps"], flow["cnp"]) == ("0", "0", "0")  # the sample has none: no marks
        assert not any(row["mark"] for row in flow_packets)
        assert _severe_logs(browser) == []
    event_id = parse_qs(urlparse(href).query)["event"][0]
    subprocess.run([*FABRICSCOPE, "packets", "--event", event_id, "--out", str(tmp_path / "cli.pcapng"),
                    "--data-dir", data_dir, "--topology", str(SAMPLES / "topology.yaml")],
                   check=True, capture_output=True, timeout=300)
    downloaded = _frames(tmp_path / "dashboard.pcapng")
    assert downloaded and downloaded == _frames(tmp_path / "cli.pcapng")


def test_a_congestion_incident_s_packets_show_their_ce_marks_highlighted(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    require(shutil.which("tshark") is not None, "tshark is not installed (make test installs it)")
    data_dir = str(tmp_path / "fabricscope")
    truth = _replay("allreduce_congestion", data_dir)
    congestion = next(event for event in truth["events"] if event["kind"] == "congestion")
    with _served(data_dir) as url:
        browser.get(f"{url}/?range=1m")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda d: len(_column(d, "congestion-table", "link")) > 0)
        _open_packets(browser, "congestion-table", "event")
        _wait_for_packets(browser)
        rows = _cells(browser, "packets-table", ("link", "ecn", "cnp", "mark"))
        packets = [row for row in rows if row["mark"] != "gap"]
        assert {row["link"] for row in packets} == {congestion["link"]}
        marked_ce = [at for at, row in enumerate(rows) if row["mark"] != "gap" and "CE" in row["mark"]]
        assert 0 < len(marked_ce) <= truth["ecn_ce"]
        assert all(("CE" in row["mark"]) == (row["ecn"] == "CE") for row in packets)
        assert all(("CNP" in row["mark"]) == (row["cnp"] == "CNP") for row in packets)
        assert _background(browser, "packets-table", marked_ce[0]) == CE_BACKGROUND

        # The episode's details link selects it everywhere: its window, its link, its flows, its details.
        browser.get(f"{url}/?range=1m")
        wait.until(lambda d: len(_column(d, "congestion-table", "details")) > 0)
        jobs = _column(browser, "congestion-table", "job")[0].split(",")
        _click_cell_link(browser, "congestion-table", "details", "incident=")
        query = parse_qs(urlparse(browser.current_url).query)
        event_id = query["incident"][0]
        assert query["link"] == [congestion["link"]] and query["live"] == ["0"]
        start, end = (datetime.fromisoformat(query[key][0]) for key in ("from", "to"))
        assert start < datetime.fromtimestamp(congestion["ts_us"] / 1e6, UTC) < end
        wait.until(lambda d: d.find_element(By.ID, "incident").is_displayed()
                   and d.find_element(By.ID, "incident-summary").text)
        summary = browser.find_element(By.ID, "incident-summary").text
        assert summary.startswith(f"congestion on {congestion['link']} {congestion['direction']} · closed · ")
        blocks = [block.text for block in browser.find_elements(By.CSS_SELECTOR, "#incident-details .incident-block")]
        top_flows = next(block for block in blocks if block.startswith("top flows"))
        assert " udp " in top_flows and jobs and all(job in top_flows for job in jobs), (jobs, top_flows)
        wait.until(lambda d: _column(d, "flow-table", "link"))
        assert set(_column(browser, "flow-table", "link")) == {congestion["link"]}
        linked = browser.execute_script(
            "return Array.from(document.querySelectorAll(\"#flow-table td[data-dash-column='events'] a\"))"
            ".map(a => a.getAttribute('href'));")
        assert any(f"incident={event_id}" in href for href in linked), linked
        wait.until(lambda d: f"congestion {congestion['link']}" in _shape_names(d, "congestion-series"))
        assert browser.find_element(By.ID, "recovery-table-empty").text == \
            f"No link failures in this window with link {congestion['link']}."
        assert browser.find_element(By.ID, "congestion-table-empty").text == ""
        assert f"congestion {congestion['link']}" in _shape_names(browser, "iterations")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for view in ("incident", "congestion"):
            section = browser.find_element(By.ID, view)
            browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -140);", section)
            section.screenshot(str(ARTIFACTS / f"allreduce_congestion_{view}.png"))
        assert _severe_logs(browser) == []


def test_a_1024_link_fabric_stays_legible_and_its_worst_links_come_first(
    store: Store, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    """64 leaves × 16 spines filled as bench.dashboard fills its store (an hour of flows and counters, a failure
    of leaf1-spine1 and a congestion on leaf2-spine2 every 5 minutes; no 10 ms bins: a 6-minute window of 1,024
    links reads the 1-minute rollup): the map draws every link in a few traces and names the worst, the table
    lists them worst first, search finds a leaf's links."""
    big = simulated.Fabric(FabricSpec(name="big", leaves=64, spines=16)).write_topology(tmp_path / "big.yaml",
                                                                                         mirrored=False)
    start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
    bench_dashboard.fill(store, big, 200_000, start, bin_minutes=0)
    server = dashboard_server(store, big, host="127.0.0.1", port=0).start()
    try:
        browser.get(f"{server.url}/?live=0&from={quote((start + timedelta(minutes=54)).isoformat())}"
                    f"&to={quote((start + timedelta(hours=1)).isoformat())}")
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda d: sum(len(t["meta"]["links"]) for t in _graph_data(d, "fabric-map") if t["meta"]) == 1024)
        traces = _graph_data(browser, "fabric-map")
        assert len(traces) < 16
        statuses = {t["meta"]["status"]: t["meta"]["links"] for t in traces if t["meta"]}
        assert statuses["failed"] == ["leaf1-spine1"] and "leaf2-spine2" in statuses["congested"], statuses.keys()
        labels = next(t for t in traces if t["name"] == "links")
        named = [link for link, text in zip(labels["customdata"], labels["text"], strict=True) if text]
        assert 1 < len(named) <= 12 and "leaf1-spine1" in named
        wait.until(lambda d: len(_column(d, "worst-links", "link")) == 12)
        assert _column(browser, "worst-links", "link")[0].strip() == "leaf1-spine1"
        assert _column(browser, "worst-links", "status")[:2] == ["failed", "congested"]  # 2% CE on every link
        browser.find_element(By.ID, "search").send_keys("leaf37-", Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.LINK_TEXT, "leaf37-spine16"))
        results = browser.find_element(By.ID, "search-results").text
        assert results.count("leaf37-spine") == 16, results
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.find_element(By.ID, "fabric").screenshot(str(ARTIFACTS / "big_fabric.png"))
        browser.find_element(By.ID, "ecmp").screenshot(str(ARTIFACTS / "big_fabric_ecmp.png"))
        assert _severe_logs(browser) == []
    finally:
        server.stop()
