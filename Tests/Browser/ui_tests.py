#!/usr/bin/env python3
"""Browser tests of qcowscoped's web view (/ui/) in headless Chromium, driven by Selenium.

Run by run-browser-tests.sh, which builds the daemon, makes the images and starts it:

    ui_tests.py --base http://127.0.0.1:PORT --images DIR --daemon BIN --screenshots DIR --work DIR

Plain Python (no test framework): every function decorated with @test runs in order in one
browser session; the last line is "N passed, M failed" and the exit status is 1 on any failure.
Every page load records CSP violations and alert() calls (a script injected before the page's own
scripts), and every console message is collected; `clean_console` fails on any error among them.
"""

import argparse
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

XSS_NAME = "<img src=x onerror=alert(1)>"
DEMO = ["base.qcow2", "bitmap-in-use.qcow2", "bitmaps.qcow2", "overlay.qcow2", "paging.qcow2", "plain.qcow2",
        "snapshots.qcow2", "v2.qcow2", "xss.qcow2", "zstd.qcow2"]

# Runs before any script of every document: records CSP violations and alert() calls.
RECORDER = """
window.__csp = [];
window.__alerts = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + (e.lineNumber || ''));
});
window.alert = (m) => { window.__alerts.push(String(m)); };
"""

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class Failure(AssertionError):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


class UI:
    """One headless Chromium session with helpers; collects console messages and violations."""

    def __init__(self, args):
        self.args = args
        self.base = args.base
        self.console = []  # (test, level, message)
        self.violations = []  # (test, text)
        self.alerts = []
        self.expected = []  # (test, regex): console messages a test provokes on purpose
        self.current_test = "setup"
        self.driver = self.new_driver()

    def new_driver(self):
        o = webdriver.ChromeOptions()
        o.binary_location = "/usr/bin/chromium"
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1280,1000", "--force-device-scale-factor=1", "--lang=en-US",
                  "--disable-extensions", "--no-first-run", "--disable-background-networking"]:
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
        d.execute_cdp_cmd("Network.enable", {})
        return d

    # -- page state ---------------------------------------------------------------------------

    def collect(self):
        """Moves console messages and the page's recorded violations/alerts into the totals."""
        d = self.driver
        try:
            for entry in d.get_log("browser"):
                self.console.append((self.current_test, entry["level"], entry["message"]))
        except Exception:  # noqa: BLE001 (the session may be gone)
            return
        try:
            rec = d.execute_script("return [window.__csp || [], window.__alerts || []]")
        except Exception:  # noqa: BLE001
            rec = [[], []]
        for v in rec[0]:
            if (self.current_test, v) not in self.violations:
                self.violations.append((self.current_test, v))
        for a in rec[1]:
            if (self.current_test, a) not in self.alerts:
                self.alerts.append((self.current_test, a))

    def load(self, fragment="#/", base=None):
        """A fresh document (not a hash change) at /ui/FRAGMENT."""
        self.collect()
        self.driver.get("about:blank")
        self.driver.get((base or self.base) + "/ui/" + fragment)
        self.wait_ready()

    def go(self, fragment):
        """A hash navigation inside the loaded document."""
        self.driver.execute_script("location.hash = arguments[0]", fragment)
        self.wait_ready()

    def wait(self, cond, timeout=10, message="condition"):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: cond())
        except TimeoutException:
            raise Failure(f"timed out after {timeout}s waiting for {message}") from None

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait_ready(self, timeout=10):
        self.wait(lambda: self.js("return !!document.querySelector('main:not([aria-busy]) h1') && "
                                  "!document.querySelector('main .loading')"), timeout, "the page to render")

    def h1(self):
        return self.js("return document.querySelector('main h1').textContent")

    def rows(self):
        return self.js("return [...document.querySelectorAll('#image-table tbody tr[data-name]')].map(r => r.dataset.name)")

    def active(self):
        return self.js("const a = document.activeElement; return [a.tagName, a.className, a.textContent, a.getAttribute('href')]")

    def shot(self, name, full=True):
        """Saves a PNG (the whole page when full) into the screenshots directory."""
        path = os.path.join(self.args.screenshots, name + ".png")
        d = self.driver
        if full:
            m = d.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = m.get("cssContentSize") or m["contentSize"]
            width = d.execute_script("return document.documentElement.clientWidth")
            img = d.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": min(size["height"], 6000), "scale": 1}})
            import base64
            with open(path, "wb") as f:
                f.write(base64.b64decode(img["data"]))
        else:
            d.save_screenshot(path)
        return path

    def network_statuses(self, url_part):
        """(status, url) of the responses seen since the last call whose URL contains url_part."""
        out = []
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.responseReceived":
                r = msg["params"]["response"]
                if url_part in r["url"]:
                    out.append((r["status"], r["url"]))
        return out

    def pixel(self, x, y):
        return self.js("""
            const c = document.querySelector('.map-canvas'); const dpr = window.devicePixelRatio || 1;
            return Array.from(c.getContext('2d').getImageData(Math.round(arguments[0] * dpr), Math.round(arguments[1] * dpr), 1, 1).data);
        """, x, y)

    def map_geometry(self):
        return self.js("const d = document.querySelector('.map-canvas').dataset; "
                       "return {cols: +d.cols, rows: +d.rows, px: +d.cellPx, cells: +d.cells, dirty: +d.dirtyCells, cellBytes: d.cellBytes}")

    def cell_center(self, i, g):
        return ((i % g["cols"]) * g["px"] + g["px"] / 2, (i // g["cols"]) * g["px"] + g["px"] / 2)

    def hover_cell(self, i):
        g = self.map_geometry()
        x, y = self.cell_center(i, g)
        # Scroll the cell into the middle of the viewport, then move the pointer there (viewport
        # coordinates: an element offset would count from the centre of its visible part).
        left, top = self.js("""
            const c = document.querySelector('.map-canvas');
            let r = c.getBoundingClientRect();
            window.scrollBy(0, r.top + arguments[0] - window.innerHeight / 2);
            r = c.getBoundingClientRect();
            return [r.left, r.top];""", y)
        actions = ActionBuilder(self.driver)
        actions.pointer_action.move_to_location(int(left + x), int(top + y))
        actions.perform()
        self.wait(lambda: self.js("const t = document.querySelector('.map-tip'); "
                                  "return !t.hidden && t.textContent.length > 0 && document.querySelector('.map-canvas').dataset.selected === arguments[0]",
                                  str(i)), 5, f"the tooltip of cell {i}")
        return self.js("return document.querySelector('.map-tip').textContent")

    def no_overflow(self):
        return self.js("const e = document.documentElement; return [e.scrollWidth, e.clientWidth]")

    def quit(self):
        self.collect()
        self.driver.quit()


# -- the tests ----------------------------------------------------------------------------------


def http_get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        r = opener.open(req, timeout=10)
        return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@test
def assets_and_headers(ui):
    """/ and /ui redirect to /ui/; every asset has its type, the CSP, nosniff, no-referrer and an ETag (304)."""
    status, headers, _ = http_get(ui.base + "/")
    check(status == 308 and headers["Location"] == "/ui/", f"/ -> {status} {headers.get('Location')}")
    status, headers, body = http_get(ui.base + "/ui/")
    check(status == 200 and headers["Content-Type"].startswith("text/html"), f"/ui/ -> {status} {headers.get('Content-Type')}")
    csp = headers.get("Content-Security-Policy", "")
    check("script-src 'self'" in csp and "'unsafe-inline'" not in csp, f"CSP: {csp}")
    check(headers.get("X-Content-Type-Options") == "nosniff" and headers.get("Referrer-Policy") == "no-referrer", "nosniff/no-referrer")
    html = body.decode()
    check(not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "index.html has an inline <script>")
    check(" style=" not in html and not re.search(r"\son[a-z]+=", html), "index.html has a style or on* attribute")
    refs = set(re.findall(r'(?:src|href)="([a-z0-9.-]+\.(?:js|css|svg))"', html))
    js_seen = set()
    todo = list(refs)
    while todo:
        name = todo.pop()
        status, headers, body = http_get(f"{ui.base}/ui/{name}")
        check(status == 200, f"/ui/{name} -> {status}")
        want = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}[name.rsplit(".", 1)[1]]
        check(headers["Content-Type"].startswith(want), f"/ui/{name}: {headers['Content-Type']}")
        check(headers.get("Content-Security-Policy") == csp, f"/ui/{name} lacks the CSP")
        if name.endswith(".js"):
            text = body.decode()
            check("innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text
                  and "document.write" not in text and "eval(" not in text, f"{name} uses an HTML sink or eval")
            for dep in re.findall(r'from "\./([a-z0-9.-]+\.js)"', text):
                if dep not in js_seen and dep not in refs:
                    js_seen.add(dep)
                    todo.append(dep)
    etag = http_get(ui.base + "/ui/app.js")[1]["ETag"]
    check(http_get(ui.base + "/ui/app.js", {"If-None-Match": etag})[0] == 304, "no 304 for a matching ETag")
    check(http_get(ui.base + "/ui/nope.js")[0] == 404, "an unknown asset is not 404")


@test
def image_list(ui):
    """The list shows every image with its virtual size in human units, bitmaps, status, findings."""
    ui.load("#/")
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message=f"{len(DEMO)} rows")
    check(ui.rows() == DEMO, f"rows: {ui.rows()}")
    def cells(name):
        return ui.js("const r = document.querySelector(`tr[data-name=\"${arguments[0]}\"]`); "
                     "return ['th', 'td.col-virtual_size', 'td.col-bitmaps', 'td.in-use', 'td.writer', 'td.status', 'td.findings']"
                     ".map(s => r.querySelector(s).textContent)", name)
    row = cells("bitmaps.qcow2")
    check(row == ["bitmaps.qcow2", "4 MiB", "2", "0", "none", "ok", "0"], f"bitmaps.qcow2 row: {row}")
    row = cells("bitmap-in-use.qcow2")
    check(row == ["bitmap-in-use.qcow2", "1 MiB", "1", "1 stale", "none", "ok", "1 (1 info)"], f"bitmap-in-use.qcow2 row: {row}")
    row = ui.js("return [...document.querySelector('tr[data-name=\"paging.qcow2\"]').cells].map(c => c.textContent)")
    check(row[1] == "64 MiB", f"paging.qcow2 row: {row}")
    check(ui.js("return document.querySelector('tr[data-name=\"bitmaps.qcow2\"] td').title") == "4,194,304 bytes", "exact size title")
    check(ui.driver.title == "Images — qcowscope", f"title {ui.driver.title}")
    ui.shot("list")


@test
def sort_and_filter(ui):
    """Column buttons sort (aria-sort follows), the filter narrows the rows, both survive re-renders."""
    ui.load("#/")
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message="rows")

    def click(key):
        ui.driver.find_element(By.CSS_SELECTOR, f'button[data-sort="{key}"]').click()

    click("virtual_size")
    check(ui.rows()[-2:] == ["bitmaps.qcow2", "paging.qcow2"], f"ascending by size: {ui.rows()}")
    check(ui.js("return document.querySelector('button[data-sort=\"virtual_size\"]').closest('th').getAttribute('aria-sort')") == "ascending", "aria-sort")
    click("virtual_size")
    check(ui.rows()[:2] == ["paging.qcow2", "bitmaps.qcow2"], f"descending by size: {ui.rows()}")
    check(ui.js("return document.activeElement.dataset.sort") == "virtual_size", "focus stays on the sort button")
    click("name")
    check(ui.rows() == DEMO, "ascending by name")
    click("name")
    check(ui.rows() == list(reversed(DEMO)), f"descending by name: {ui.rows()}")
    click("bitmaps")
    by_bitmaps = ["base.qcow2", "overlay.qcow2", "plain.qcow2", "snapshots.qcow2", "v2.qcow2", "zstd.qcow2",
                  "bitmap-in-use.qcow2", "paging.qcow2", "xss.qcow2", "bitmaps.qcow2"]
    check(ui.rows() == by_bitmaps, f"by bitmaps (ties by name): {ui.rows()}")
    click("name")
    f = ui.driver.find_element(By.ID, "image-filter")
    f.send_keys("bitmap")
    ui.wait(lambda: ui.rows() == ["bitmap-in-use.qcow2", "bitmaps.qcow2"], message=f"filtered rows, got {ui.rows()}")
    check("2 of 10 images" in ui.js("return document.getElementById('image-count').textContent"), "count text")
    f.send_keys(Keys.CONTROL, "a")
    f.send_keys(Keys.BACKSPACE)
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message="all rows after clearing the filter")
    f.send_keys("no such image")
    ui.wait(lambda: "No image matches" in ui.js("return document.getElementById('image-table').textContent"), message="empty state")
    f.send_keys(Keys.CONTROL, "a")
    f.send_keys(Keys.BACKSPACE)


@test
def list_columns(ui):
    """The listing shows bitmaps in use (stale when no writer holds the image), the writer, the check state
    and the modification time as "ago" with the full time on hover; each column sorts and the filter knows them."""
    ui.load("#/")
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message="rows")
    cells = ui.js("""const r = document.querySelector('tr[data-name="bitmap-in-use.qcow2"]');
        return [r.querySelector('td.in-use').textContent, r.querySelector('td.writer').textContent,
                r.querySelector('td.check').textContent, r.querySelector('td.mtime time').textContent,
                r.querySelector('td.mtime time').getAttribute('title')]""")
    check(cells[0] == "1 stale" and cells[1] == "none", f"in use / writer: {cells}")
    check(re.search(r"(pending|clean|leaks|corrupt|busy)", cells[2]), f"check: {cells[2]}")
    check(re.fullmatch(r"(just now|\d+ s ago|\d+ min ago|\d+ h ago|\d+ days ago)", cells[3]) and cells[4].endswith("Z"), f"mtime: {cells[3:]}")
    ui.driver.find_element(By.CSS_SELECTOR, 'button[data-sort="in_use"]').click()
    ui.driver.find_element(By.CSS_SELECTOR, 'button[data-sort="in_use"]').click()
    check(ui.rows()[0] == "bitmap-in-use.qcow2", f"descending by bitmaps in use: {ui.rows()}")
    for key in ("writer", "check", "mtime"):
        ui.driver.find_element(By.CSS_SELECTOR, f'button[data-sort="{key}"]').click()
        check(len(ui.rows()) == len(DEMO), f"sorting by {key} keeps every row")
    ui.driver.find_element(By.CSS_SELECTOR, 'button[data-sort="name"]').click()
    f = ui.driver.find_element(By.ID, "image-filter")
    f.send_keys("stale")
    ui.wait(lambda: ui.rows() == ["bitmap-in-use.qcow2"], message=f"the stale filter, got {ui.rows()}")
    f.send_keys(Keys.CONTROL, "a")
    f.send_keys(Keys.BACKSPACE)
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message="all rows after clearing the filter")
    ui.shot("list")


@test
def list_paging(ui):
    """#/?limit=3 pages through /v1/images with the `next` cursor: Next, Previous and First links."""
    ui.load("#/?limit=3")
    ui.wait(lambda: len(ui.rows()) == 3, message="3 rows")
    seen = list(ui.rows())
    pages = 1
    while ui.js("return !!document.getElementById('next-page')"):
        before = ui.rows()
        ui.driver.find_element(By.ID, "next-page").click()
        ui.wait(lambda: ui.rows() and ui.rows() != before, message="the next page")
        seen += ui.rows()
        pages += 1
        check(pages < 10, "too many pages")
        if pages == 2:
            check(ui.js("return [...document.querySelectorAll('.pager a')].map(a => a.textContent)") == ["First page", "Next page"],
                  "links on page 2")
        if pages == 3:
            prev = ui.js("return [...document.querySelectorAll('.pager a')].map(a => a.textContent)")
            check("Previous page" in prev, f"no Previous on page 3: {prev}")
    check(seen == DEMO and pages == 4, f"paged {pages} pages: {seen}")
    ui.driver.find_element(By.LINK_TEXT, "Previous page").click()
    ui.wait(lambda: ui.rows() == DEMO[6:9], message=f"page 3 again, got {ui.rows()}")
    ui.driver.find_element(By.LINK_TEXT, "First page").click()
    ui.wait(lambda: ui.rows() == DEMO[:3], message="page 1 again")


@test
def exact_numbers_and_names(ui):
    """The page's own modules: u64 integers stay exact (BigInt), names become %XX from name_hex, cells are exact."""
    ui.load("#/")
    r = ui.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([import('./json.js'), import('./util.js'), import('./dirtymap.js')]).then(([j, u, m]) => { try {
          const v = j.parseJSON(String.raw`{"a": 18446744073709551615, "b": 9007199254740993, "c": 0.046875, "d": [-1, 2e3], "__proto__": {"x": 1}, "s": "\\u00e9\\"q"}`);
          const cells = m.computeCells(18446744073709551615n, 65536, [{start: 18446744073709486080n, length: 65535n, dirty: true}], 18446744073709551615n);
          const last = cells.cells[cells.cells.length - 1];
          done([String(v.a), typeof v.a, String(v.b), v.c, v.d, Object.getPrototypeOf(v) === Object.prototype, Object.keys(v).includes('__proto__'), v.s,
                u.bitmapSegment('622f61ff25'), u.bitmapSegment('3c696d67207372633d78206f6e6572726f723d616c6572742831293e'),
                u.encodeBytes(u.decodeSegment('b%2fa%FFz%C3%A9')), u.size(18446744073709551615n), u.int(18446744073709551615n),
                cells.cells.length, String(cells.cellBytes), String(last.dirty), String(last.end)]);
        } catch (e) { done(String(e)); } }, (e) => done(String(e)));
    """)
    check(isinstance(r, list), f"module import failed: {r}")
    check(r[0:3] == ["18446744073709551615", "bigint", "9007199254740993"], f"big integers: {r[0:3]}")
    check(r[3] == 0.046875 and r[4] == [-1, 2000], f"numbers: {r[3:5]}")
    check(r[5] is True and r[6] is True, "a __proto__ key must stay a plain member")
    check(r[7] == 'é"q', f"string escapes: {r[7]!r}")
    check(r[8] == "b%2Fa%FF%25" and r[9] == "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E", f"segments: {r[8:10]}")
    check(r[10] == "b%2Fa%FFz%C3%A9", f"canonical segment: {r[10]}")
    check(r[11] == "16 EiB" and r[12] == "18,446,744,073,709,551,615", f"u64 formatting: {r[11:13]}")
    check(r[13] == 1024 and r[14] == str(2**64 // 1024) and r[15] == "65535" and r[16] == str(2**64 - 1), f"u64 cells: {r[13:]}")


@test
def image_page(ui):
    """Clicking an image opens its page: summary, bitmaps, findings, header fields, extensions, snapshots."""
    ui.load("#/")
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message="rows")
    ui.driver.find_element(By.LINK_TEXT, "bitmaps.qcow2").click()
    ui.wait(lambda: ui.h1() == "Image bitmaps.qcow2", message="the image page")
    check(ui.driver.current_url.endswith("#/images/bitmaps.qcow2"), ui.driver.current_url)
    check(ui.js("return document.activeElement.tagName") == "H1", "focus moves to the heading")
    summary = ui.js("return document.getElementById('summary').textContent")
    check("4 MiB" in summary and "4,194,304 bytes" in summary and "512 bytes" in summary, f"summary: {summary[:300]}")
    links = ui.js("return [...document.querySelectorAll('#bitmaps a.bitmap-link')].map(a => [a.textContent, a.getAttribute('href')])")
    check(links == [["b-enabled", "#/images/bitmaps.qcow2/bitmaps/b-enabled"], ["b-disabled", "#/images/bitmaps.qcow2/bitmaps/b-disabled"]], f"bitmaps: {links}")
    bitmaps = ui.js("return document.getElementById('bitmaps').textContent")
    check("192 KiB (4.69%)" in bitmaps and "enabled" in bitmaps and "disabled" in bitmaps, f"bitmaps text: {bitmaps}")
    header = ui.js("return document.getElementById('header').textContent")
    check("cluster_bits" in header and "refcount_table_offset" in header and "0x" in header, "header fields")
    ext = ui.js("return document.getElementById('extensions').textContent")
    check("0x23852875" in ext and "nb_bitmaps: 2" in ext, f"extensions: {ext[:300]}")
    check("No findings." in ui.js("return document.getElementById('findings').textContent"), "no findings")
    ui.shot("image")

    ui.go("#/images/snapshots.qcow2")
    ui.wait(lambda: ui.h1() == "Image snapshots.qcow2", message="the snapshots image")
    snaps = ui.js("return document.getElementById('snapshots').textContent")
    check("snap-one" in snaps and "snap-two" in snaps, f"snapshots: {snaps}")

    ui.go("#/images/bitmap-in-use.qcow2")
    ui.wait(lambda: ui.h1() == "Image bitmap-in-use.qcow2", message="the in-use image")
    findings = ui.js("return [...document.querySelectorAll('#findings tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
    check(findings and re.fullmatch(r"[A-Z]\d+", findings[0][1]) and findings[0][5].startswith("0x"), f"findings: {findings}")
    check(ui.js("return document.querySelector('#bitmaps tr.untrusted') !== null"), "in-use row not marked")
    check("untrustworthy" in ui.js("return document.getElementById('bitmaps').textContent"), "no untrustworthy badge")

    ui.go("#/images/overlay.qcow2")
    ui.wait(lambda: ui.h1() == "Image overlay.qcow2", message="the overlay image")
    check("base.qcow2" in ui.js("return document.getElementById('summary').textContent"), "backing file shown")

    ui.expected.append(("image_page", r"no-such\.qcow2 .* 404"))
    ui.go("#/images/no-such.qcow2")
    ui.wait(lambda: ui.h1() == "Not found", message="a not-found page")
    check("no-such.qcow2" in ui.js("return document.querySelector('main').textContent"), "problem detail shown")


def alloc_pixel(ui, x):
    """The RGBA of the allocation map's canvas at canvas column x (its own pixels, not CSS ones)."""
    return ui.js("const c = document.querySelector('.alloc-canvas'); "
                 "return Array.from(c.getContext('2d').getImageData(arguments[0], 10, 1, 1).data);", x)


@test
def image_status_map_and_chain(ui):
    """The image page leads with its status (writer, check, bits, findings), then the allocation map from
    /map coloured by kind and layer, then the backing chain as links; the details are folded."""
    ui.load("#/images/overlay.qcow2")
    ui.wait(lambda: ui.h1() == "Image overlay.qcow2", message="the overlay image")
    order = ui.js("return [...document.querySelectorAll('main section')].map(s => s.id)")
    check(order[:5] == ["status", "allocation", "chain", "bitmaps", "findings"], f"sections: {order}")
    check(ui.js("return ['summary', 'header', 'extensions', 'snapshots'].every(id => "
                "document.querySelector('#' + id + ' details.fold:not([open])') !== null)"), "the details are not folded")
    banner = ui.js("const b = document.getElementById('writer-banner'); return [b.className, b.textContent]")
    check("status-ok" in banner[0] and "no writer" in banner[1], f"writer banner: {banner}")
    check(ui.js("return document.getElementById('check-status') !== null"), "no check status")
    # overlay.qcow2 (1 MiB, 1000 canvas columns of 1,048.576 bytes): base.qcow2 holds 0-64k, the overlay
    # 32k-36k, nothing holds the rest.
    ui.wait(lambda: ui.js("return document.querySelector('.alloc-canvas') !== null"), message="the allocation map")
    own, backing, empty = alloc_pixel(ui, 33), alloc_pixel(ui, 10), alloc_pixel(ui, 500)
    check(own[:3] == [47, 129, 247] and own[3] == 255, f"column 33 (the overlay's 4k at 32k) is {own}")
    check(backing[:3] == [137, 87, 229] and backing[3] == 255, f"column 10 (base.qcow2's data) is {backing}")
    check(alloc_pixel(ui, 60)[:3] == [137, 87, 229], "column 60 (base.qcow2's data up to 64k)")
    check(empty[3] == 0, f"column 500 (unallocated) is {empty}")
    legend = ui.js("return document.querySelector('.alloc-legend').textContent")
    check("data in this image: 4 KiB" in legend and "unallocated: 960 KiB" in legend, f"legend: {legend}")
    links = ui.js("return [...document.querySelectorAll('#chain a.chain-link')].map(a => [a.textContent, a.getAttribute('href')])")
    check(links == [["overlay.qcow2", "#/images/overlay.qcow2"], ["base.qcow2", "#/images/base.qcow2"]], f"chain: {links}")
    ui.shot("image-overlay")
    ui.driver.find_element(By.CSS_SELECTOR, "#chain a.chain-link[href='#/images/base.qcow2']").click()
    ui.wait(lambda: ui.h1() == "Image base.qcow2", message="the chain link to base.qcow2")

    # A crash left a bitmap in use and nothing holds the image: the banner says so and what to do.
    ui.go("#/images/bitmap-in-use.qcow2")
    ui.wait(lambda: ui.h1() == "Image bitmap-in-use.qcow2", message="the in-use image")
    banner = ui.js("const b = document.getElementById('writer-banner'); return [b.className, b.textContent]")
    check("status-bad" in banner[0] and "bitmaps left in use" in banner[1] and "full backup" in banner[1], f"banner: {banner}")
    ui.shot("image-in-use")

    # A real writer: qemu-io holds plain.qcow2 open (QEMU's write lock); the banner follows it.
    ui.go("#/images/plain.qcow2")
    ui.wait(lambda: ui.h1() == "Image plain.qcow2", message="the plain image")
    holder = subprocess.Popen(["qemu-io", "-f", "qcow2", os.path.join(ui.args.images, "plain.qcow2")],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ui.wait(lambda: "writer present" in ui.js("return document.getElementById('writer-banner').textContent"), 30,
                "the writer banner while qemu-io holds the image")
        check("status-warn" in ui.js("return document.getElementById('writer-banner').className"), "writer banner class")
        ui.shot("image-writer")
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    ui.wait(lambda: "no writer" in ui.js("return document.getElementById('writer-banner').textContent"), 30,
            "the banner after qemu-io exits")


@test
def status_rules(ui):
    """The status panel says, for each rule the image breaks, how often, what the rule means and what to
    do: the text of /v1/rules for that code, worst severity first."""
    status, _, body = http_get(f"{ui.args.base}/v1/rules")
    check(status == 200, f"/v1/rules: {status}")
    rules = {r["code"]: r for r in json.loads(body)["rules"]}
    status, _, body = http_get(f"{ui.args.base}/v1/images/bitmap-in-use.qcow2/findings")
    codes = sorted({f["code"] for f in json.loads(body)["findings"]})
    check(codes, "bitmap-in-use.qcow2 has findings")
    ui.load("#/images/bitmap-in-use.qcow2")
    ui.wait(lambda: ui.js("return document.querySelectorAll('#finding-rules li.rule-item').length") == len(codes),
            message="one rule line per code")
    items = ui.js("return [...document.querySelectorAll('#finding-rules li.rule-item')].map(li => "
                  "[li.dataset.code, li.querySelector('.meaning').textContent, li.querySelector('.todo').textContent])")
    for code, meaning, todo in items:
        check(meaning == rules[code]["summary"], f"{code}: meaning {meaning!r}")
        check(todo == f" What to do: {rules[code]['action']}", f"{code}: what to do {todo!r}")
    check(ui.js("return document.querySelector('#status #finding-rules') !== null"), "the rules are in the status section")
    ui.shot("image-rules")
    # An image that breaks no rule has no list.
    ui.go("#/images/bitmaps.qcow2")
    ui.wait(lambda: ui.h1() == "Image bitmaps.qcow2", message="bitmaps.qcow2")
    ui.wait(lambda: ui.js("return document.querySelector('#findings table, #findings .none') !== null"), message="its findings")
    check(ui.js("return document.querySelectorAll('#finding-rules li').length") == 0, "rule lines for an image without findings")


@test
def deep_chain_colours(ui):
    """A chain of 8 layers (layer k writes 64 KiB at k MiB): the top's allocation map colours each
    layer's data by its depth (the six colours taken again past depth 6), the legend has one entry per
    depth, and the chain lists every layer as a link."""
    images = os.path.join(ui.args.work, "deep")
    os.makedirs(images, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(images, "deep0.qcow2"), "8M"], check=True)
    for k in range(1, 8):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", f"deep{k - 1}.qcow2", "-F", "qcow2",
                        os.path.join(images, f"deep{k}.qcow2")], check=True)
    for k in range(8):
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {k + 1} {k}M 64k", os.path.join(images, f"deep{k}.qcow2")],
                       check=True, stdout=subprocess.DEVNULL)
    proc, base = start_daemon(ui, images, [], "deep")
    try:
        ui.load("#/images/deep7.qcow2", base=base)
        ui.wait(lambda: ui.js("return document.querySelector('.alloc-canvas') !== null"), message="the allocation map")
        # 8 MiB over 1000 columns: layer k's data starts at column 125 k (depth 7 - k).
        colours = ["#2f81f7", "#8957e5", "#bf8700", "#1a7f37", "#cf222e", "#0a7ea4", "#7d4e24"]
        rgb = lambda c: [int(c[i:i + 2], 16) for i in (1, 3, 5)]
        for k in range(8):
            depth = 7 - k
            want = colours[0] if depth == 0 else colours[1 + (depth - 1) % 6]
            got = alloc_pixel(ui, 125 * k + 2)
            check(got[:3] == rgb(want) and got[3] == 255, f"depth {depth} (layer deep{k}) at column {125 * k + 2}: {got}, want {want}")
        check(alloc_pixel(ui, 125 * 3 + 60)[3] == 0, "unallocated between the layers' data")
        depths = ui.js("return [...document.querySelectorAll('.alloc-legend li[data-depth]')].map(li => [li.dataset.depth, "
                       "li.querySelector('.swatch').className, li.textContent])")
        check([d for d, _, _ in depths] == [str(d) for d in range(1, 8)], f"legend depths: {depths}")
        check(all(f"swatch-depth-{(int(d) - 1) % 6 + 1}" in c and "64 KiB" in t for d, c, t in depths), f"legend: {depths}")
        links = ui.js("return [...document.querySelectorAll('#chain a.chain-link')].map(a => a.textContent)")
        check(links == [f"deep{k}.qcow2" for k in range(7, -1, -1)], f"chain: {links}")
        ui.shot("image-deep-chain")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@test
def bitmap_page_and_dirty_map(ui):
    """The bitmap page: totals, flags, fields, and the canvas map coloured where dirty, with a tooltip."""
    ui.load("#/images/bitmaps.qcow2")
    ui.driver.find_element(By.LINK_TEXT, "b-enabled").click()
    ui.wait(lambda: ui.h1() == "Bitmap b-enabled in bitmaps.qcow2", message="the bitmap page")
    ui.wait(lambda: ui.js("return !!document.querySelector('.map-canvas[data-cells]')"), message="the map")
    totals = ui.js("return document.getElementById('totals').textContent")
    check("196,608 bytes" in totals and "4.69%" in totals and "64 KiB" in totals and "enabled" in totals, f"totals: {totals}")
    fields = ui.js("return document.getElementById('directory').textContent")
    check("bitmap_table_offset" in fields and "granularity_bits" in fields and "622d656e61626c6564" in fields, "directory fields")
    check(ui.js("return document.getElementById('untrusted-notice')") is None, "a consistent bitmap marked untrustworthy")

    g = ui.map_geometry()
    check(g["cells"] == 64 and g["dirty"] == 3 and g["cellBytes"] == "65536", f"geometry {g}")
    # Dirty: guest [0, 64k), [1M, 1M+4k), [3M, 3M+512) -> cells 0, 16, 48. Clean: e.g. 1, 17, 63.
    colours = {i: ui.pixel(*ui.cell_center(i, g)) for i in (0, 16, 48, 1, 17, 63)}
    clean = colours[1]
    for i in (0, 16, 48):
        check(colours[i][3] == 255 and colours[i] != clean, f"cell {i} not drawn dirty: {colours[i]} vs clean {clean}")
    for i in (17, 63):
        check(colours[i] == clean, f"cell {i} not clean: {colours[i]}")
    check(colours[0][0] > colours[0][2], f"dirty colour should be warm: {colours[0]}")
    # Count dirty-coloured cells by pixel, all 64.
    painted = sum(1 for i in range(64) if ui.pixel(*ui.cell_center(i, g)) != clean)
    check(painted == 3, f"{painted} cells painted")

    tip = ui.hover_cell(16)
    check("Cell 17 of 64" in tip and "0x100000–0x10ffff" in tip and "65,536 of 65,536 bytes dirty (100%)" in tip, f"tooltip: {tip}")
    readout = ui.js("return document.querySelector('.readout').textContent")
    check("0x100000–0x10ffff" in readout and "bytes dirty" in readout, f"readout: {readout}")
    tip = ui.hover_cell(5)
    check("0 of 65,536 bytes dirty (0%)" in tip, f"clean tooltip: {tip}")
    tip = ui.hover_cell(48)
    ui.shot("bitmap", full=False)
    check("65,536 of 65,536" in tip, f"3M cell: {tip}")  # 512 B written, 64 KiB granularity: the granule is dirty

    # Keyboard: focus the canvas, arrows move, the text follows.
    ActionChains(ui.driver).move_to_element(ui.driver.find_element(By.CSS_SELECTOR, "main h1")).perform()
    ui.js("document.querySelector('.map-canvas').focus()")
    ActionChains(ui.driver).send_keys(Keys.HOME, Keys.ARROW_DOWN).perform()
    readout = ui.js("return document.querySelector('.readout').textContent")
    check(readout.startswith("Cell 17 of 64") and "65,536 of 65,536 bytes dirty" in readout, f"keyboard readout: {readout}")
    ActionChains(ui.driver).send_keys(Keys.ARROW_RIGHT).perform()
    check(ui.js("return document.querySelector('.readout').textContent").startswith("Cell 18 of 64"), "arrow right")
    check(ui.js("return !document.querySelector('.map-tip').hidden"), "tooltip on keyboard focus")

    runs = ui.js("const d = document.querySelector('details.runs'); d.open = true; return d.textContent")
    check("Dirty runs as text (3)" in runs and "0x300000" in runs, f"runs: {runs}")

    # The disabled bitmap: nothing dirty, nothing painted.
    ui.go("#/images/bitmaps.qcow2/bitmaps/b-disabled")
    ui.wait(lambda: ui.js("return document.querySelector('.map-canvas').dataset.cells === '64'"), message="the b-disabled map")
    check(ui.map_geometry()["dirty"] == 0, "b-disabled has dirty cells")


@test
def bitmap_table_paging_and_large_map(ui):
    """64 MiB, 512-byte granularity: 32 table entries paged 16 at a time; 1024 map cells, one partly dirty."""
    ui.load("#/images/paging.qcow2/bitmaps/fine")
    ui.wait(lambda: ui.js("return !!document.querySelector('.map-canvas[data-cells]')"), message="the map")
    g = ui.map_geometry()
    check(g["cells"] == 1024 and g["cols"] == 32 and g["cellBytes"] == "65536", f"geometry {g}")
    # 0..1M: cells 0-15 dirty; 20M+512 -> cell 320 partly (512 of 65536); 40M+96k -> 640, 641; 63M..64M -> 1008-1023.
    check(g["dirty"] == 16 + 1 + 2 + 16, f"dirty cells {g['dirty']}")
    full = ui.pixel(*ui.cell_center(0, g))
    part = ui.pixel(*ui.cell_center(320, g))
    clean = ui.pixel(*ui.cell_center(100, g))
    check(len({tuple(full), tuple(part), tuple(clean)}) == 3, f"full {full}, partial {part}, clean {clean} not distinct")
    tip = ui.hover_cell(320)
    check("512 of 65,536 bytes dirty (0.78%)" in tip, f"partial tooltip: {tip}")

    info = lambda: ui.js("return document.getElementById('table-info').textContent")  # noqa: E731
    check(info().startswith("Entries 1–32 of 32"), f"info: {info()}")
    sel = ui.driver.find_element(By.ID, "table-limit")
    sel.find_element(By.CSS_SELECTOR, 'option[value="16"]').click()
    ui.wait(lambda: info().startswith("Entries 1–16 of 32"), message=f"16 per page, got {info()}")
    check("each covering 2 MiB" in info(), info())
    entries = ui.js("return [...document.querySelectorAll('#table tbody tr')].map(r => r.cells[0].textContent)")
    check(entries == [str(i) for i in range(16)], f"entries {entries}")
    check(ui.js("return document.getElementById('table-prev').disabled"), "Previous enabled on the first page")
    ui.driver.find_element(By.ID, "table-next").click()
    ui.wait(lambda: info().startswith("Entries 17–32 of 32"), message="the second table page")
    check(ui.js("return document.getElementById('table-next').disabled"), "Next enabled on the last page")
    last = ui.js("return [...document.querySelectorAll('#table tbody tr')].map(r => r.cells[1].textContent)")
    check(last[-1] == "serialized" and "all-zeroes" in last, f"entry types {last}")
    ui.driver.find_element(By.ID, "table-prev").click()
    ui.wait(lambda: info().startswith("Entries 1–16 of 32"), message="back to the first table page")


@test
def dirty_map_zoom(ui):
    """The dirty map zooms: + on the focused map shows the selected cell's range (in the address, so it can be
    shared), asks the extents of that range only, and relabels the guest-offset axis; - zooms out, a drag
    selects cells, "Whole disk" goes back."""
    base = "#/images/paging.qcow2/bitmaps/fine"
    ui.load(base)
    ui.wait(lambda: ui.js("return !!document.querySelector('.map-canvas[data-cells]')"), message="the map")
    axis = lambda: ui.js("return [...document.querySelectorAll('#map-axis span')].map(s => s.textContent)")
    check(axis() == ["0x0 (0 bytes)", "0x2000000 (32 MiB)", "0x4000000 (64 MiB)"], f"axis of the whole disk: {axis()}")
    g = ui.map_geometry()
    check(g["cells"] == 1024 and g["cellBytes"] == "65536", f"geometry: {g}")
    ui.network_statuses("extents")  # forget the requests so far
    canvas = ui.driver.find_element(By.CSS_SELECTOR, ".map-canvas")
    canvas.click()
    ui.js("document.querySelector('.map-canvas').focus()")
    for _ in range(5):
        canvas.send_keys(Keys.ARROW_RIGHT)
    ui.wait(lambda: ui.js("return document.querySelector('.map-canvas').dataset.selected") == "5", message="cell 5 selected")
    canvas.send_keys("+")
    ui.wait(lambda: ui.driver.current_url.endswith(base + "?start=327680&length=65536"), message=f"the zoomed address, at {ui.driver.current_url}")
    ui.wait(lambda: ui.js("return document.querySelector('.map-canvas[data-from]')?.dataset.from") == "327680", message="the zoomed map")
    check(axis() == ["0x50000 (320 KiB)", "0x58000 (352 KiB)", "0x60000 (384 KiB)"], f"axis zoomed: {axis()}")
    g = ui.map_geometry()
    check(g["cells"] == 128 and g["cellBytes"] == "512", f"zoomed geometry: {g}")
    asked = [u for _, u in ui.network_statuses("/extents")]
    check(any("start=327680&length=65536" in u for u in asked), f"the range's extents were not asked: {asked}")
    check(not any("/extents?limit=10000" in u and "start=" not in u for u in asked), f"the whole disk was asked again: {asked}")
    ui.shot("bitmap-zoomed")
    # Zoom out: eight times wider around the centre.
    ui.js("document.querySelector('.map-canvas').focus()")
    ui.driver.find_element(By.CSS_SELECTOR, ".map-canvas").send_keys("-")
    ui.wait(lambda: "length=524288" in ui.driver.current_url, message=f"zoomed out, at {ui.driver.current_url}")
    # A drag over cells 0..3 of the whole disk shows those four cells.
    ui.go(base)
    ui.wait(lambda: ui.js("return document.querySelector('.map-canvas[data-cells]')?.dataset.length") == "67108864", message="the whole disk again")
    g = ui.map_geometry()
    left, top = ui.js("const r = document.querySelector('.map-canvas').getBoundingClientRect(); return [r.left, r.top]")
    a = ui.cell_center(0, g)
    b = ui.cell_center(3, g)
    actions = ActionBuilder(ui.driver)
    actions.pointer_action.move_to_location(int(left + a[0]), int(top + a[1]))
    actions.pointer_action.pointer_down()
    actions.pointer_action.move_to_location(int(left + b[0]), int(top + b[1]))
    actions.pointer_action.pointer_up()
    actions.perform()
    ui.wait(lambda: ui.driver.current_url.endswith(base + "?start=0&length=262144"), message=f"the dragged range, at {ui.driver.current_url}")
    ui.wait(lambda: ui.js("return !!document.getElementById('zoom-reset')"), message="the whole-disk link")
    ui.driver.find_element(By.ID, "zoom-reset").click()
    ui.wait(lambda: ui.driver.current_url.endswith(base), message="back to the whole disk")
    # The wheel: up zooms into the cell under the pointer (cell 7), down zooms out again.
    ui.wait(lambda: ui.js("return document.querySelector('.map-canvas[data-cells]')?.dataset.length") == "67108864", message="the whole disk")
    g = ui.map_geometry()
    wheel = ("const c = document.querySelector('.map-canvas'), r = c.getBoundingClientRect(); "
             "c.dispatchEvent(new WheelEvent('wheel', {deltaY: arguments[0], clientX: r.left + arguments[1], "
             "clientY: r.top + arguments[2], bubbles: true, cancelable: true}))")
    # Point at cell 7 first (the map is then live and cell 7 selected), then turn the wheel there.
    ui.hover_cell(7)
    g = ui.map_geometry()
    x, y = ui.cell_center(7, g)
    ui.js(wheel, -100, x, y)
    ui.wait(lambda: ui.driver.current_url.endswith(base + "?start=458752&length=65536"), message=f"the wheel's zoom, at {ui.driver.current_url}")
    ui.wait(lambda: ui.js("return document.querySelector('.map-canvas[data-from]')?.dataset.from") == "458752", message="the wheel-zoomed map")
    check(axis() == ["0x70000 (448 KiB)", "0x78000 (480 KiB)", "0x80000 (512 KiB)"], f"axis after the wheel: {axis()}")
    ui.js(wheel, 100, 10, 10)
    ui.wait(lambda: "length=524288" in ui.driver.current_url, message=f"the wheel zoomed out, at {ui.driver.current_url}")

    # 16 TiB (a sparse image with one bitmap, data at 8 TiB and near the end): the axis gives exact
    # offsets at every zoom, and a zoom at 8 TiB asks only that range.
    images = os.path.join(ui.args.work, "huge16")
    os.makedirs(images, exist_ok=True)
    huge = os.path.join(images, "huge16.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", huge, "16T"], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", huge, "b"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 8T 64k", "-c", f"write {(16 << 40) - 65536} 64k", huge],
                   check=True, stdout=subprocess.DEVNULL)
    proc, hbase = start_daemon(ui, images, [], "huge16")
    try:
        ui.load("#/images/huge16.qcow2/bitmaps/b", base=hbase)
        ui.wait(lambda: ui.js("return document.querySelector('.map-canvas[data-cells]')?.dataset.length") == str(16 << 40), message="the 16 TiB map")
        check(axis() == ["0x0 (0 bytes)", "0x80000000000 (8 TiB)", "0x100000000000 (16 TiB)"], f"16 TiB axis: {axis()}")
        ui.network_statuses("extents")
        ui.go(f"#/images/huge16.qcow2/bitmaps/b?start={8 << 40}&length={1 << 30}")
        ui.wait(lambda: ui.js("return document.querySelector('.map-canvas[data-from]')?.dataset.from") == str(8 << 40), message="the 1 GiB at 8 TiB")
        check(axis() == ["0x80000000000 (8 TiB)", "0x80020000000 (8 TiB)", "0x80040000000 (8 TiB)"] or
              all(a.startswith(p) for a, p in zip(axis(), ["0x80000000000 ", "0x80020000000 ", "0x80040000000 "])), f"axis at 8 TiB: {axis()}")
        asked = [u for _, u in ui.network_statuses("/extents")]
        # The range's extents, and at most a one-extent page for the disk's size: never the whole disk.
        ranged = [u for u in asked if "limit=1&" not in u and not u.endswith("limit=1")]
        check(ranged and all(f"start={8 << 40}&length={1 << 30}" in u for u in ranged), f"extents asked at 8 TiB: {asked}")
        ui.shot("bitmap-16tib-zoomed")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@test
def untrustworthy_bitmap(ui):
    """An in-use bitmap is visibly marked untrustworthy on its page."""
    ui.load("#/images/bitmap-in-use.qcow2/bitmaps/b-inuse")
    notice = ui.js("const n = document.getElementById('untrusted-notice'); return n && n.textContent")
    check(notice and "Untrustworthy" in notice and "in_use" in notice, f"notice: {notice}")
    state = ui.js("return document.getElementById('totals').textContent")
    check("in use" in state and "untrustworthy" in state, f"badges: {state}")
    check(ui.js("return document.querySelector('.dirtymap').classList.contains('untrusted')"), "map not marked")
    # As a checkpoint: not ready, with the K rule that says why.
    ui.wait(lambda: ui.js("return document.getElementById('checkpoint-verdict') !== null"), message="the checkpoint verdict")
    verdict = ui.js("return document.getElementById('checkpoint').textContent")
    check("not ready" in verdict and "full backup" in verdict and re.search(r"K\d+", verdict), f"checkpoint: {verdict}")
    ui.shot("bitmap-in-use")


@test
def checkpoint_ready(ui):
    """A consistent bitmap's page says an incremental backup since it is ready and what it reads."""
    ui.load("#/images/bitmaps.qcow2/bitmaps/b-enabled")
    ui.wait(lambda: ui.js("return document.getElementById('checkpoint-verdict') !== null"), message="the checkpoint verdict")
    verdict = ui.js("return document.getElementById('checkpoint').textContent")
    doc = json.loads(http_get(ui.base + "/v1/images/bitmaps.qcow2/checkpoints/b-enabled")[2])
    check(doc["incremental_ready"] is True and "ready" in verdict and "not ready" not in verdict, f"checkpoint: {verdict}")
    check(f"{doc['backup_bytes']:,} bytes of data" in verdict and "192 KiB" in verdict, f"sizes: {verdict} vs {doc['backup_bytes']}")
    check("notice-ok" in ui.js("return document.getElementById('checkpoint-verdict').className"), "a ready verdict is not drawn as good news")
    ui.shot("bitmap-checkpoint")


@test
def xss_name_is_text(ui):
    """A bitmap named <img src=x onerror=alert(1)> is shown literally, linked by its bytes, no alert."""
    ui.load("#/images/xss.qcow2")
    link = ui.driver.find_element(By.CSS_SELECTOR, "#bitmaps a.bitmap-link")
    check(link.text == XSS_NAME, f"link text {link.text!r}")
    check(link.get_attribute("href").endswith("#/images/xss.qcow2/bitmaps/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"),
          link.get_attribute("href"))
    check(ui.js("return document.querySelectorAll('main img').length") == 0, "an <img> element was created")
    link.click()
    ui.wait(lambda: ui.js("return (document.getElementById('bitmap-name') || {}).textContent") == XSS_NAME, message="the XSS bitmap page")
    check(ui.js("return document.querySelectorAll('img').length") == 0, "an <img> element was created")
    check(XSS_NAME in ui.js("return document.getElementById('crumbs').textContent"), "breadcrumb")
    check(ui.driver.title.startswith(XSS_NAME), f"title {ui.driver.title!r}")
    check(ui.js("return document.querySelector('.map-canvas').dataset.dirtyCells") == "3", "xss map")
    ui.shot("xss")
    time.sleep(0.3)
    check(ui.js("return window.__alerts") == [], "alert() was called")
    check(ui.js("return window.__csp") == [], f"CSP violations: {ui.js('return window.__csp')}")


@test
def keyboard_navigation(ui):
    """From a fresh image page, Tab reaches a bitmap link with a visible focus ring; Enter opens it."""
    ui.load("#/images/bitmaps.qcow2")
    check(ui.js("return document.activeElement === document.body"), "focus starts on the body")
    stops = []
    for _ in range(40):
        ActionChains(ui.driver).send_keys(Keys.TAB).perform()
        a = ui.active()
        stops.append(a[2].strip()[:20])
        outline = ui.js("const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]")
        check(outline[0] != "none" and outline[1] != "0px", f"no visible focus on {a}: {outline}")
        if "bitmap-link" in (a[1] or ""):
            break
    else:
        raise Failure(f"Tab never reached a bitmap link: {stops}")
    check(stops[0] == "Skip to content", f"first stop {stops[0]}")
    check(len(stops) <= 12, f"{len(stops)} Tab stops to the first bitmap: {stops}")
    ActionChains(ui.driver).send_keys(Keys.ENTER).perform()
    ui.wait(lambda: "/bitmaps/b-enabled" in ui.driver.current_url and ui.h1().startswith("Bitmap b-enabled"), message="the bitmap page")
    ui.wait(lambda: ui.js("return document.activeElement.tagName") == "H1", message="focus on the new heading")
    # The skip link moves focus to main.
    ui.load("#/")
    ActionChains(ui.driver).send_keys(Keys.TAB).perform()
    check(ui.active()[2] == "Skip to content", "skip link first")
    ActionChains(ui.driver).send_keys(Keys.ENTER).perform()
    check(ui.js("return document.activeElement.id") == "main", "skip link target")
    # Labels: every form control has one.
    unlabelled = ui.js("return [...document.querySelectorAll('input, select')].filter(e => !e.labels || !e.labels.length).map(e => e.id)")
    check(unlabelled == [], f"controls without a label: {unlabelled}")


@test
def narrow_window(ui):
    """At 500 px (about 60-80 characters) no page scrolls sideways; tables scroll in their own box."""
    ui.driver.set_window_size(500, 900)
    try:
        for frag, name in [("#/", "narrow-list"), ("#/images/bitmaps.qcow2", "narrow-image"),
                           ("#/images/paging.qcow2/bitmaps/fine", "narrow-bitmap")]:
            ui.load(frag)
            if "bitmaps/" in frag:
                ui.wait(lambda: ui.js("return !!document.querySelector('.map-canvas[data-cells]')"), message="the map")
            time.sleep(0.3)
            sw, cw = ui.no_overflow()
            check(sw <= cw, f"{frag}: horizontal overflow {sw} > {cw}")
            if frag == "#/":
                box = ui.js("const b = document.getElementById('image-table').parentElement; return [b.scrollWidth, b.clientWidth]")
                check(box[0] <= box[1], f"the image list needs sideways scrolling at 500 px: {box}")
            ui.shot(name)
        g = ui.map_geometry()
        check(g["cols"] * g["px"] <= 480, f"map wider than the window: {g}")
    finally:
        ui.driver.set_window_size(1280, 1000)


@test
def live_updates(ui):
    """Settings set the poll interval (localStorage); polls send If-None-Match (304s); a new bitmap appears in place."""
    ui.load("#/images/plain.qcow2")
    ui.driver.find_element(By.CSS_SELECTOR, "#settings summary").click()
    box = ui.driver.find_element(By.ID, "poll-seconds")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("1", Keys.ENTER)
    ui.wait(lambda: ui.js("return localStorage.getItem('qcowscope.pollSeconds')") == "1", message="the stored interval")
    check("every 1 s" in ui.js("return document.getElementById('poll-state').textContent"), "poll state text")
    ui.driver.find_element(By.CSS_SELECTOR, "#settings summary").click()
    # A marker survives only if the page is not reloaded.
    ui.js("window.__marker = 42")
    ui.network_statuses("")  # drop older events
    time.sleep(2.6)
    statuses = ui.network_statuses("/v1/images/plain.qcow2")
    check(statuses and all(s == 304 for s, _ in statuses), f"idle polls should be 304: {statuses[:6]}")
    check("No bitmaps extension" in ui.js("return document.getElementById('bitmaps').textContent"), "plain has no bitmaps")

    subprocess.run(["qemu-img", "bitmap", "--add", os.path.join(ui.args.images, "plain.qcow2"), "live-new"], check=True)
    t0 = time.time()
    ui.wait(lambda: "live-new" in (ui.js("return [...document.querySelectorAll('#bitmaps a.bitmap-link')].map(a => a.textContent).join()") or ""),
            timeout=6, message="the new bitmap to appear")
    took = time.time() - t0
    check(ui.js("return window.__marker") == 42, "the page was reloaded")
    check(ui.h1() == "Image plain.qcow2", "heading")
    statuses = ui.network_statuses("/v1/images/plain.qcow2")
    check(any(s == 200 for s, _ in statuses), "no 200 after the change")
    print(f"    new bitmap shown {took:.1f}s after qemu-img bitmap --add (poll interval 1 s)")

    # The list follows too.
    ui.go("#/")
    ui.wait(lambda: len(ui.rows()) == len(DEMO), message="rows")
    ui.js("window.__marker = 43")
    subprocess.run(["qemu-img", "bitmap", "--add", os.path.join(ui.args.images, "plain.qcow2"), "live-two"], check=True)
    ui.wait(lambda: ui.js("return document.querySelector('tr[data-name=\"plain.qcow2\"]').cells[2].textContent") == "2", timeout=6,
            message="the list's bitmap count to follow")
    check(ui.js("return window.__marker") == 43, "the list was reloaded")

    # Hidden tab: no polling; visible again: polling resumes at once.
    ui.go("#/images/plain.qcow2")
    count = "return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length"
    ui.js("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}); document.dispatchEvent(new Event('visibilitychange'))")
    check("Paused" in ui.js("return document.getElementById('poll-state').textContent"), "paused state text")
    time.sleep(0.3)
    before = ui.js(count)
    time.sleep(2.5)
    check(ui.js(count) == before, f"polled while hidden: {before} -> {ui.js(count)}")
    ui.js("delete document.hidden; document.dispatchEvent(new Event('visibilitychange'))")
    ui.wait(lambda: ui.js(count) > before, timeout=3, message="polling to resume")

    # Interval 0 turns polling off; restore the default for the next tests.
    ui.js("localStorage.setItem('qcowscope.pollSeconds', '5')")


class AuthProxy(http.server.ThreadingHTTPServer):
    """Stands in for the daemon's bearer-token check: /v1/ needs `Authorization: Bearer <token>`."""

    daemon_threads = True

    def __init__(self, upstream, token):
        self.upstream = upstream
        self.token = token
        self.seen = []
        super().__init__(("127.0.0.1", 0), AuthHandler)


class AuthHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        srv = self.server
        auth = self.headers.get("Authorization")
        if self.path.startswith("/v1/"):
            srv.seen.append(auth)
            if auth != f"Bearer {srv.token}":
                body = json.dumps({"type": "urn:qcowscope:problem:unauthorized", "title": "Unauthorized", "status": 401,
                                   "detail": "a bearer token is required"}).encode()
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="qcowscoped"')
                self.send_header("Content-Type", "application/problem+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        host, port = srv.upstream
        conn = http.client.HTTPConnection(host, port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "authorization")}
        conn.request("GET", self.path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive", "date", "server"):
                self.send_header(k, v)
        if r.status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if r.status != 304:
            self.wfile.write(body)
        conn.close()


def start_daemon(ui, images, extra, label):
    """Another qcowscoped on a free port: (process, base URL)."""
    logpath = os.path.join(ui.args.work, f"daemon-{label}.log")
    with open(logpath, "w") as log:
        p = subprocess.Popen([ui.args.daemon, "--images", images, "--listen", "127.0.0.1:0", *extra],
                             stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(logpath).read())
        if m:
            return p, f"http://127.0.0.1:{m.group(1)}"
        if p.poll() is not None:
            raise Failure(f"the {label} daemon exited: " + open(logpath).read()[-500:])
        time.sleep(0.1)
    p.terminate()
    raise Failure(f"the {label} daemon did not start")


def token_daemon(ui, token):
    """A second qcowscoped with --token-file when this build has it; else None."""
    help_text = subprocess.run([ui.args.daemon, "--help"], capture_output=True, text=True).stdout
    if "--token-file" not in help_text:
        return None
    path = os.path.join(ui.args.work, "token")
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return start_daemon(ui, ui.args.images, ["--token-file", path], "token")


@test
def bearer_token(ui):
    """On 401 a form (not prompt()) asks once for a token; it goes to sessionStorage and into Authorization."""
    token = "browser-test-token-0123456789"
    started = token_daemon(ui, token)
    proxy = None
    if started:
        proc, base = started
        print(f"    against qcowscoped --token-file ({base})")
    else:
        host, port = ui.base.replace("http://", "").split(":")
        proxy = AuthProxy((host, int(port)), token)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{proxy.server_address[1]}"
        print(f"    this qcowscoped has no --token-file: against a bearer-token proxy ({base})")
    try:
        # The image page fires six requests at once: one form, not six.
        ui.collect()
        ui.driver.get("about:blank")
        ui.driver.get(base + "/ui/#/images/bitmaps.qcow2")
        ui.wait(lambda: ui.js("return document.getElementById('auth-dialog').open"), message="the token form")
        check(ui.js("return document.activeElement.id") == "auth-token", "focus in the token field")
        check(ui.js("return document.querySelectorAll('dialog[open]').length") == 1, "more than one form")
        ui.shot("auth", full=False)
        field = ui.driver.find_element(By.ID, "auth-token")
        field.send_keys("wrong-token-wrong-token", Keys.ENTER)
        ui.wait(lambda: "refused" in ui.js("return document.getElementById('auth-message').textContent")
                and ui.js("return document.getElementById('auth-dialog').open"), message="the refused message")
        field.send_keys(token, Keys.ENTER)
        ui.wait(lambda: ui.js("return !!document.querySelector('main:not([aria-busy]) h1') && document.querySelector('main h1').textContent")
                == "Image bitmaps.qcow2", message="the page after the token")
        check(not ui.js("return document.getElementById('auth-dialog').open"), "form still open")
        check(ui.js("return sessionStorage.getItem('qcowscope.token')") == token, "token not in sessionStorage")
        check(ui.js("return localStorage.getItem('qcowscope.token')") is None, "token in localStorage")
        check(ui.js("return document.querySelectorAll('#bitmaps a.bitmap-link').length") >= 2, "bitmaps after auth")
        if proxy:
            check(f"Bearer {token}" in proxy.seen, "no Authorization header with the token")
        # Navigation and reload keep working with the stored token, without asking.
        ui.driver.refresh()
        ui.wait_ready()
        check(not ui.js("return document.getElementById('auth-dialog').open"), "asked again after reload")
        ui.go("#/")
        ui.wait(lambda: len(ui.rows()) >= len(DEMO), message="the list with the token")
        # Cancel: an error page with a button to try again.
        ui.js("sessionStorage.clear()")
        ui.driver.refresh()
        ui.wait(lambda: ui.js("return document.getElementById('auth-dialog').open"), message="the form again")
        ui.driver.find_element(By.ID, "auth-cancel").click()
        ui.wait(lambda: ui.js("return !!document.getElementById('sign-in')"), message="the sign-in button")
        ui.driver.find_element(By.ID, "sign-in").click()
        ui.wait(lambda: ui.js("return document.getElementById('auth-dialog').open"), message="the form after sign-in")
        ui.driver.find_element(By.ID, "auth-token").send_keys(token, Keys.ENTER)
        ui.wait(lambda: len(ui.rows()) >= len(DEMO), message="the list after signing in")
        # 401 answers are logged by the browser as failed loads: expected here, and only here.
        ui.expected.append(("bearer_token", r"/v1/.* 401 \(Unauthorized\)"))
    finally:
        ui.driver.get("about:blank")
        if proxy:
            proxy.shutdown()
        if started:
            started[0].terminate()
            started[0].wait(5)


@test
def malformed_images(ui):
    """Every image of the contract test's malformed set, and every bitmap of each, renders (u64 sizes,
    names with '/' and non-UTF-8 bytes, unreadable images as problem pages) with no script error."""
    if not ui.args.odd_images:
        print("    skipped: no --odd-images directory (Tests/Contract/make-malformed-images.py missing)")
        return
    proc, base = start_daemon(ui, ui.args.odd_images, [], "malformed")
    ui.expected.append(("malformed_images", r"Failed to load resource: the server responded with a status of (404|410|422)"))
    try:
        ui.load("#/?limit=1000", base=base)
        ui.wait(lambda: len(ui.rows()) > 10, message="the malformed list")
        images = ui.js("return [...document.querySelectorAll('#image-table a.image-link')].map(a => [a.textContent, a.getAttribute('href')])")
        check(any(n == "huge.qcow2" for n, _ in images), f"images: {images}")
        statuses = ui.js("return Object.fromEntries([...document.querySelectorAll('#image-table tbody tr[data-name]')].map(r => [r.dataset.name, r.querySelector('td.status').textContent]))")
        check(statuses.get("short.qcow2") == "unreadable", f"short.qcow2 status {statuses.get('short.qcow2')}")
        pages = 0
        ui.js("localStorage.setItem('qcowscope.pollSeconds', '1')")
        waited = False
        for name, href in images:
            ui.go(href)
            h1 = ui.h1()
            if statuses[name] == "unreadable":
                check(h1 == "Cannot show this page", f"{name}: {h1}")
                check("unreadable" in ui.js("return document.querySelector('main').textContent").lower(), f"{name}: no problem text")
                if not waited:
                    # Polls every second would repeat the error in the "Live update failed" banner.
                    time.sleep(2.5)
                    waited = True
                    banner = ui.js("return [document.getElementById('banner').hidden, document.getElementById('banner').textContent]")
                    check(banner[0], f"{name}: the error is shown twice, also in the banner: {banner[1]!r}")
                continue
            check(h1 == f"Image {name}", f"{name}: heading {h1!r}")
            bitmaps = ui.js("return [...document.querySelectorAll('#bitmaps a.bitmap-link')].map(a => [a.textContent, a.getAttribute('href')])")
            if name == "bitmap-names.qcow2":
                hrefs = [h for _, h in bitmaps]
                check(any(h.endswith("/bitmaps/b%2Fenabled") for h in hrefs) and any(h.endswith("/bitmaps/b%FFdisabled") for h in hrefs),
                      f"bitmap hrefs {bitmaps}")
            for bname, bhref in bitmaps:
                ui.go(bhref)
                check(ui.js("return (document.getElementById('bitmap-name') || {}).textContent") == bname, f"{name}/{bname}: heading {ui.h1()!r}")
                ui.wait(lambda: ui.js("return !!document.querySelector('.map-canvas[data-cells]') || "
                                      "(document.getElementById('map-status') || {}).textContent.includes('could not')"),
                        message=f"{name}/{bname}: the map or its error")
                cells = ui.js("return +(document.querySelector('.map-canvas').dataset.cells || 0)")
                check(cells <= 1024, f"{name}/{bname}: {cells} cells")
                pages += 1
            pages += 1
        ui.js("localStorage.removeItem('qcowscope.pollSeconds')")
        ui.go("#/images/hugebm.qcow2")
        summary = ui.js("return document.getElementById('summary').textContent")
        when = ui.js("const t = document.querySelector('#summary time'); return t && [t.textContent, t.getAttribute('datetime'), getComputedStyle(t).whiteSpace]")
        check(when and when[0].endswith(" UTC") and "T" in when[1] and when[2] == "nowrap", f"modified time not one short line: {when}")
        check("18,446,744,073,709,551,615 bytes" in summary, f"u64 virtual size not exact: {summary[:200]}")
        print(f"    {len(images)} images, {pages} pages rendered")
    finally:
        ui.driver.get("about:blank")
        proc.terminate()
        proc.wait(5)


@test
def dark_mode(ui):
    """prefers-color-scheme: dark switches the palette (page and map)."""
    ui.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    try:
        ui.load("#/images/bitmaps.qcow2/bitmaps/b-enabled")
        ui.wait(lambda: ui.js("return !!document.querySelector('.map-canvas[data-cells]')"), message="the map")
        bg = ui.js("return getComputedStyle(document.body).backgroundColor")
        check(bg == "rgb(15, 20, 25)", f"dark background: {bg}")
        g = ui.map_geometry()
        check(ui.pixel(*ui.cell_center(1, g))[:3] == [0x26, 0x30, 0x3a], "dark clean cell colour")
        ui.hover_cell(0)
        ui.shot("bitmap-dark", full=False)
    finally:
        ui.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


@test
def clean_console(ui):
    """No console errors, no CSP violations and no alert() anywhere in the run."""
    ui.collect()
    errors = [c for c in ui.console if c[1] in ("SEVERE", "ERROR")
              and not any(t == c[0] and re.search(rx, c[2]) for t, rx in ui.expected)]
    check(not errors, "console errors: " + "; ".join(f"[{t}] {m}" for t, _, m in errors[:8]))
    check(not ui.violations, f"CSP violations: {ui.violations[:8]}")
    check(not ui.alerts, f"alerts: {ui.alerts}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=False)
    p.add_argument("--images")
    p.add_argument("--daemon")
    p.add_argument("--screenshots", default=".build/browser-screenshots")
    p.add_argument("--work", default="/tmp")
    p.add_argument("--odd-images", default="", help="the demo images plus Tests/Contract/make-malformed-images.py's")
    p.add_argument("--only", default="")
    p.add_argument("--list", action="store_true")
    args = p.parse_args()
    if args.list:
        for t in TESTS:
            print(f"{t.__name__}: {t.__doc__}")
        return 0
    only = set(filter(None, args.only.split(",")))
    os.makedirs(args.screenshots, exist_ok=True)
    started = time.time()
    ui = UI(args)
    passed = failed = 0
    try:
        for t in TESTS:
            if only and t.__name__ not in only and t.__name__ != "clean_console":
                continue
            ui.current_test = t.__name__
            t0 = time.time()
            try:
                t(ui)
                ui.collect()
                passed += 1
                print(f"PASS {t.__name__} ({time.time() - t0:.1f}s)", flush=True)
            except Exception as e:  # noqa: BLE001
                failed += 1
                print(f"FAIL {t.__name__} ({time.time() - t0:.1f}s): {e}", flush=True)
                if not isinstance(e, Failure):
                    traceback.print_exc()
                ui.collect()
                try:
                    ui.shot(f"FAIL-{t.__name__}", full=False)
                except Exception:  # noqa: BLE001
                    pass
    finally:
        ui.quit()
    print(f"browser tests took {time.time() - started:.0f}s; screenshots in {args.screenshots}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
