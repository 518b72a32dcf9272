#!/usr/bin/env python3
"""fleet.py DAEMON: a simulated fleet on one machine, watched by one real Prometheus with the shipped rules.

Twenty qcowscoped listen on 127.0.0.2 to 127.0.0.21 (all of 127.0.0.0/8 is local on Linux), each over its
own directory of real images made by qemu-img; two hosts hold an image broken on purpose: one with QEMU's
corrupt bit set, one whose bitmap a crashed qemu-io left in use. Prometheus discovers the daemons through
file_sd_configs, relabels `host` as deploy/prometheus.yml does, and loads deploy/prometheus-rules.yml (its
`for:` durations shortened to seconds; promtool's unit tests check the real ones). The test waits until
exactly the expected alerts fire (/api/v1/alerts), checks the recording rules per host (/api/v1/query),
then repairs the corrupt image (a clean file renamed over it) and waits for its alert to resolve.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "Reliability"))
from reliability import check, failures  # noqa: E402

HOSTS = [f"127.0.0.{i}" for i in range(2, 22)]
CORRUPT_HOST, CRASHED_HOST = HOSTS[3], HOSTS[5]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def clean_image(path):
    """64 MiB, bitmap b0, 1 MiB written after it was added (so 1 MiB dirty)."""
    run("qemu-img", "create", "-q", "-f", "qcow2", path, "64M")
    run("qemu-img", "bitmap", "--add", path, "b0")
    run("qemu-io", "-f", "qcow2", "-c", "write 0 1M", path)


def set_corrupt_bit(path):
    with open(path, "r+b") as f:  # the test's own copy, never an image the daemon was given to keep
        f.seek(79)
        b = f.read(1)[0]
        f.seek(79)
        f.write(bytes([b | 0x02]))  # incompatible_features bit 1: corrupt


def crash_with_in_use_bitmap(path):
    p = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xee 0 4096", "-c", "sigraise 9", path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert p.returncode == -9, f"qemu-io did not die by SIGKILL: {p.returncode}"
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path], check=True,
                                     capture_output=True, text=True).stdout)
    flags = [b.get("flags", []) for b in info["format-specific"]["data"].get("bitmaps", [])]
    assert any("in-use" in f for f in flags), f"no bitmap in use after the crash: {flags}"


def api(prom, path, **query):
    url = f"{prom}/api/v1/{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["data"]


def firing(prom):
    return sorted((a["labels"]["alertname"], a["labels"].get("host", ""), a["labels"].get("image", ""))
                  for a in api(prom, "alerts")["alerts"] if a["state"] == "firing")


def wait(what, predicate, seconds):
    t0 = time.monotonic()
    value = None
    while time.monotonic() - t0 < seconds:
        try:
            value = predicate()
            if value:
                return True, time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.5)
    return False, time.monotonic() - t0


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    daemon = sys.argv[1]
    prometheus = shutil.which("prometheus") or "/usr/bin/prometheus"
    work = tempfile.mkdtemp(prefix="qcowscope-fleet-")
    procs = []
    try:
        port = free_port()
        template = os.path.join(work, "template.qcow2")
        clean_image(template)
        for host in HOSTS:
            d = os.path.join(work, host)
            os.makedirs(d)
            for name in ["vm-a.qcow2", "vm-b.qcow2"]:
                shutil.copyfile(template, os.path.join(d, name))
        corrupt = os.path.join(work, CORRUPT_HOST, "corrupt.qcow2")
        shutil.copyfile(template, corrupt)
        set_corrupt_bit(corrupt)
        crashed = os.path.join(work, CRASHED_HOST, "crashed.qcow2")
        shutil.copyfile(template, crashed)
        crash_with_in_use_bitmap(crashed)

        for host in HOSTS:
            log = open(os.path.join(work, f"{host}.log"), "w")
            # The first host's scrubber checks its (clean) images, for the check-age panel; the others idle.
            scrub = "on" if host == HOSTS[0] else "off"
            procs.append(subprocess.Popen(
                [daemon, "--images", os.path.join(work, host), "--listen", f"{host}:{port}", "--io-threads", "2",
                 "--scrub", scrub, "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT))
        ok, took = wait("daemons", lambda: all(
            urllib.request.urlopen(f"http://{h}:{port}/healthz", timeout=1).status == 200 for h in HOSTS), 30)
        check(ok, f"20 daemons on 127.0.0.2 to 127.0.0.21 answer /healthz ({took:.1f} s)")

        # The shipped rules, with for: in seconds.
        with open(os.path.join(ROOT, "deploy", "prometheus-rules.yml")) as f:
            rules = re.sub(r"for: \d+[mh]", "for: 3s", f.read())
        with open(os.path.join(work, "rules.yml"), "w") as f:
            f.write(rules)
        with open(os.path.join(work, "targets.yml"), "w") as f:
            f.write("- targets: [" + ", ".join(f"'{h}:{port}'" for h in HOSTS) + "]\n  labels: {site: test}\n")
        prom_port = free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ['{work}/rules.yml']
scrape_configs:
  - job_name: qcowscope
    file_sd_configs:
      - files: ['{work}/targets.yml']
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__address__]
        regex: '([^:]+)(:\\d+)?'
        target_label: host
        replacement: '$1'
""")
        prom_log = open(os.path.join(work, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], stdout=prom_log, stderr=subprocess.STDOUT))
        prom = f"http://127.0.0.1:{prom_port}"
        ok, took = wait("targets", lambda: len([t for t in api(prom, "targets")["activeTargets"] if t["health"] == "up"]) == 20, 60)
        check(ok, f"Prometheus discovers and scrapes the 20 daemons through file_sd ({took:.1f} s)")

        expected = sorted([
            ("QcowscopeBitmapInconsistent", CRASHED_HOST, "crashed.qcow2"),
            ("QcowscopeCheckpointsNotReady", CRASHED_HOST, "crashed.qcow2"),
            ("QcowscopeImageCorrupt", CORRUPT_HOST, "corrupt.qcow2"),
        ])
        ok, took = wait("alerts", lambda: firing(prom) == expected, 60)
        check(ok, f"exactly the expected alerts fire ({took:.1f} s): {firing(prom)}")

        dirty = {r["metric"]["host"]: float(r["value"][1]) for r in api(prom, "query", query="host:qcowscope_bitmap_dirty_bytes:sum")["result"]}
        check(len(dirty) == 20 and all(v >= 2 * 1048576 for v in dirty.values()) and dirty[CRASHED_HOST] > dirty[HOSTS[0]],
              f"dirty bytes per host: 2 MiB each, more where the crashed image adds its own: {sorted(dirty.items())[:3]}...")
        errors = {r["metric"]["host"]: float(r["value"][1]) for r in api(prom, "query", query="host:qcowscope_images_with_errors:count")["result"]}
        check(set(errors) <= {CORRUPT_HOST, CRASHED_HOST} and errors.get(CORRUPT_HOST) == 1,
              f"images with error findings per host: {errors}")

        # Every query of the Grafana dashboard runs on this Prometheus ($host = all, $__rate_interval = 1m).
        with open(os.path.join(ROOT, "deploy", "grafana-dashboard.json")) as f:
            dashboard = json.load(f)
        panels = [p for top in dashboard["panels"] for p in [top] + top.get("panels", [])]
        rows = {}
        bad = []
        for panel in panels:
            for t in panel.get("targets", []):
                q = t["expr"].replace("$host", ".*").replace("$__rate_interval", "1m")
                try:
                    rows[panel["title"]] = len(api(prom, "query", query=q)["result"]) + rows.get(panel["title"], 0)
                except (OSError, KeyError) as e:
                    bad.append((panel["title"], q, str(e)))
        check(not bad and len(rows) >= 15, f"the dashboard's {len(rows)} panels' queries run on the real Prometheus: {bad}")
        check(rows.get("Hosts by images with errors") == 1 and rows.get("Top images by dirty bytes") == 10,
              f"fleet panels: hosts with errors {rows.get('Hosts by images with errors')}, top images "
              f"{rows.get('Top images by dirty bytes')}")
        ok, took = wait("check age", lambda: len(api(prom, "query", query='max by (host, image) (qcowscope_image_check_age_seconds)')["result"]) == 2, 30)
        check(ok, f"the check-age panel lists the scrubbed host's two images ({took:.1f} s)")
        with urllib.request.urlopen(f"{prom}/api/v1/label/host/values?match[]=qcowscope_build_info", timeout=5) as r:
            hosts = json.load(r)["data"]
        check(sorted(hosts) == sorted(HOSTS), f"the dashboard's host variable lists the 20 hosts: {len(hosts)}")

        # Repair: a clean file renamed over the corrupt one; its alert resolves, the other two stay.
        fresh = os.path.join(work, CORRUPT_HOST, ".repair.tmp")
        shutil.copyfile(template, fresh)
        os.replace(fresh, corrupt)
        ok, took = wait("resolve", lambda: firing(prom) == [e for e in expected if e[0] != "QcowscopeImageCorrupt"], 60)
        check(ok, f"the repaired image's alert resolves ({took:.1f} s): {firing(prom)}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    if failures:
        print(f"fleet: logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"fleet: {'FAIL' if failures else 'PASS'} ({len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
