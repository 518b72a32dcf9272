#!/usr/bin/python3
"""Storage that stalls or fails: the daemon keeps answering (issue 17), on a real FUSE filesystem.

Usage: storage-faults.py DAEMON_BINARY

Makes images with qemu-img in a temporary directory, mounts Tests/Reliability/faultfs.py over it,
runs qcowscoped on the mount with --io-timeout 2 and injects faults through faultfs's control file:

- reads of slow.qcow2 past 64 KiB stall for 40 s: its requests get 504 io-timeout (naming the
  image and the offset) within the deadline, then 503 image-stalled at once with Retry-After;
  meanwhile /healthz, /metrics, the web view, the listing (slow.qcow2 marked stalled) and another
  image answer within their normal time, and the daemon's thread count stays bounded;
- EIO on eio.qcow2: 503 io-error with the errno name and offset; nothing is cached (the same
  request succeeds once the fault is gone);
- short reads are retried; a file whose reads end early (it shrank) gives a problem with the offset;
- reads of a backing file (base.qcow2) stall: the overlay's map gets 504 io-timeout at the deadline,
  and /healthz, other images and the overlay's own header answer at once;
- SIGTERM while reads stall: the daemon exits within its 10 s drain time;
- the CLI on a stalled file gives up after its --io-timeout with exit 1.

Stalls are `interruptible`, as a hung NFS mount is (its waits are killable): the kernel can then
end the stalled reads of a process that exits. A FUSE read that ignores signals keeps even a killed
process alive until it returns, whatever the process does.

Where FUSE cannot be mounted the test fails with one clear line (it is never skipped).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reliability import check, failures, free_port  # noqa: E402


def get(base, path, timeout=30):
    """GET path: (status, headers, parsed JSON or text, seconds)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(base + path, timeout=timeout) as r:
            status, headers, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, dict(e.headers), e.read()
    took = time.monotonic() - t0
    try:
        doc = json.loads(body)
    except ValueError:
        doc = body.decode("utf-8", "replace")
    return status, headers, doc, took


def set_rules(control, rules):
    tmp = control + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"rules": rules}, f)
    os.rename(tmp, control)
    time.sleep(0.2)


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def explain_stuck_parses(base, work, pid):
    """What to look at when parses do not finish: the daemon's threads, what they block on, the reads."""
    print(f"storage-faults: daemon threads {threads_of(pid)}")
    try:
        states = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                wchan = f.read().strip() or "-"
            states[(state, wchan)] = states.get((state, wchan), 0) + 1
        print("storage-faults: daemon threads by state and wait channel:", dict(sorted(states.items())))
    except OSError as e:
        print(f"storage-faults: cannot read the daemon's threads: {e}")
    try:
        with open(os.path.join(work, "faultfs-stats.json")) as f:
            stats = json.load(f)
        print("storage-faults: faultfs ops per big file:",
              {k: v["ops"] for k, v in stats["files"].items() if k.startswith("big-")})
    except (OSError, ValueError, KeyError) as e:
        print(f"storage-faults: no faultfs stats: {e}")
    status, _, body, _ = get(base, "/metrics", timeout=5)
    if status == 200 and isinstance(body, str):
        for line in body.splitlines():
            if "big-" in line or "executor" in line or "cache" in line:
                print("storage-faults: metrics:", line)
    for name in ["daemon.log", "faultfs.log"]:
        try:
            with open(os.path.join(work, name)) as f:
                tail = f.read().splitlines()[-15:]
            print(f"storage-faults: last lines of {name}:", *tail, sep="\n  ")
        except OSError:
            pass


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    daemon = sys.argv[1]
    work = tempfile.mkdtemp(prefix="qcowscope-faults-")
    src, mnt = os.path.join(work, "src"), os.path.join(work, "mnt")
    os.makedirs(src)
    os.makedirs(mnt)
    control = os.path.join(work, "faultfs-control.json")
    set_rules(control, [])

    def qemu_img(*args):
        subprocess.run(["qemu-img", *args], check=True, stdout=subprocess.DEVNULL)

    for name in ["slow", "ok", "eio", "short", "shrunk"]:
        path = os.path.join(src, name + ".qcow2")
        qemu_img("create", "-q", "-f", "qcow2", path, "64M")
        qemu_img("bitmap", "--add", path, "b0")
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 0 1M", path], check=True, stdout=subprocess.DEVNULL)
    # A backing chain: top.qcow2's first MiB comes from base.qcow2.
    qemu_img("create", "-q", "-f", "qcow2", os.path.join(src, "base.qcow2"), "64M")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 0 1M", os.path.join(src, "base.qcow2")], check=True,
                   stdout=subprocess.DEVNULL)
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", os.path.join(src, "top.qcow2"))
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 1M 1M", os.path.join(src, "top.qcow2")], check=True,
                   stdout=subprocess.DEVNULL)
    # Four 65,535-bitmap images (QEMU's maximum): four cold parses at once are CPU-heavy.
    big = os.path.join(src, "big-0.qcow2")
    subprocess.run(["/usr/bin/python3", os.path.join(HERE, "..", "Benchmarks", "mkimages.py"), "bitmaps", big],
                   check=True, stdout=subprocess.DEVNULL)
    for i in range(1, 4):
        shutil.copyfile(big, os.path.join(src, f"big-{i}.qcow2"))
    # faultfs's stderr goes to a file: a pipe nobody reads would block its threads once full.
    fs_log_path = os.path.join(work, "faultfs.log")
    fs_log = open(fs_log_path, "w")
    fs = subprocess.Popen(
        ["/usr/bin/python3", os.path.join(HERE, "faultfs.py"), src, mnt, "--control", control],
        stdout=subprocess.PIPE, stderr=fs_log, text=True)
    line = fs.stdout.readline()
    if not line.startswith("faultfs: mounted"):
        fs.wait(10)
        with open(fs_log_path) as f:
            err = f.read().strip().splitlines()
        print(f"storage-faults: FAIL: FUSE cannot be mounted here ({err[-1] if err else 'no message'}); "
              "these tests need /dev/fuse, fuse3 and python3-fusepy (Tests/Scripts/install-deps.sh test)")
        shutil.rmtree(work, ignore_errors=True)
        return 1
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, "daemon.log"), "w")
    proc = subprocess.Popen([daemon, "--images", mnt, "--listen", f"127.0.0.1:{port}", "--io-timeout", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                if get(base, "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        check(get(base, "/v1/images/ok.qcow2")[0] == 200, "ok.qcow2 answers before any fault")

        # --- CPU-heavy work: four cold parses of 65,535-bitmap images run on the I/O workers -----
        heavy = []

        def ask_big(i):
            heavy.append(get(base, f"/v1/images/big-{i}.qcow2"))

        pollers = [threading.Thread(target=ask_big, args=(i,)) for i in range(4)]
        for t in pollers:
            t.start()
        worst = 0.0
        t0 = time.monotonic()
        while any(t.is_alive() for t in pollers) and time.monotonic() - t0 < 20:
            status, _, _, took = get(base, "/healthz")
            worst = max(worst, took)
            time.sleep(0.05)
        for t in pollers:
            t.join(30)
        check(worst < 0.5, f"/healthz during four cold 65,535-bitmap parses: slowest {worst:.3f} s (< 0.5 s)")
        check(all(h[0] in (200, 504) for h in heavy), f"the parses answer 200 (or 504 past the deadline): {[h[0] for h in heavy]}")
        # Work past its deadline is not lost: it finishes on its worker and later requests use it.
        t0 = time.monotonic()
        ready = set()
        while len(ready) < 4 and time.monotonic() - t0 < 90:
            for i in range(4):
                if i not in ready and get(base, f"/v1/images/big-{i}.qcow2")[0] == 200:
                    ready.add(i)
            time.sleep(0.5)
        check(len(ready) == 4, f"the four large images answer 200 once parsed ({time.monotonic() - t0:.1f} s later)")
        if len(ready) < 4:
            explain_stuck_parses(base, work, proc.pid)
        status, _, doc, took = get(base, "/v1/images")
        check(status == 200 and all(i["status"] != "pending" for i in doc["images"]), f"listing with parsed images: {took:.3f} s, none pending")

        # --- a stall: reads of slow.qcow2 past 64 KiB sleep 40 s (other files fail, see below) ---
        stall = {"file": "slow.qcow2", "op": "read", "from": 65536, "fault": "stall", "seconds": 40, "interruptible": True}
        errors = [
            {"file": "eio.qcow2", "op": "read", "from": 0, "fault": "eio"},
            {"file": "short.qcow2", "op": "read", "from": 0, "fault": "short", "bytes": 512},
            {"file": "shrunk.qcow2", "op": "read", "from": 65536, "fault": "short", "bytes": 0},
        ]
        set_rules(control, [stall] + errors)
        stalled = []

        def ask_slow(path):
            stalled.append((path,) + get(base, path))

        started = time.monotonic()
        askers = [threading.Thread(target=ask_slow, args=(p,)) for p in
                  ["/v1/images/slow.qcow2", "/v1/images/slow.qcow2/bitmaps/b0/extents", "/v1/images/slow.qcow2/bitmaps/b0/table"]]
        for t in askers:
            t.start()
        time.sleep(0.3)
        during = {}
        for path in ["/healthz", "/ui/", "/v1/images/ok.qcow2", "/v1/images/ok.qcow2/bitmaps"]:
            status, _, _, took = get(base, path)
            during[path] = (status, took)
            check(status == 200 and took < 0.5, f"while slow.qcow2 stalls: {path} {status} in {took:.3f} s (< 0.5 s)")
        for t in askers:
            t.join(10)
        for path, status, headers, doc, took in stalled:
            ok = status == 504 and isinstance(doc, dict) and doc.get("type", "").endswith(":io-timeout")
            check(ok and 1.8 <= took <= 3.5, f"{path}: {status} {doc.get('type') if isinstance(doc, dict) else doc!r} "
                  f"after {took:.2f} s (504 io-timeout at the 2 s deadline)")
            if ok:
                check(doc.get("image") == "slow.qcow2" and isinstance(doc.get("offset"), int) and doc["offset"] >= 65536
                      and "offset" in doc.get("detail", ""), f"{path}: the problem names the image and the file offset: {doc}")
        status, headers, doc, took = get(base, "/v1/images/slow.qcow2/header")
        check(status == 503 and doc.get("type", "").endswith(":image-stalled") and took < 0.3
              and int(headers.get("Retry-After", "0")) >= 1,
              f"next request for the stalled image: {status} {doc.get('type')} in {took:.3f} s with Retry-After "
              f"{headers.get('Retry-After')} (503 image-stalled at once)")
        status, _, doc, took = get(base, "/v1/images")
        listed = {i["name"]: i for i in doc.get("images", [])} if isinstance(doc, dict) else {}
        check(status == 200 and took < 0.5, f"listing while slow.qcow2 stalls: {status} in {took:.3f} s (< 0.5 s)")
        check(listed.get("slow.qcow2", {}).get("status") == "stalled", f"listing marks slow.qcow2 stalled: {listed.get('slow.qcow2')}")
        check(listed.get("ok.qcow2", {}).get("status") == "ok", f"listing shows ok.qcow2 ok: {listed.get('ok.qcow2')}")
        status, _, text, took = get(base, "/metrics")
        check(status == 200 and took < 1.0, f"/metrics while slow.qcow2 stalls: {status} in {took:.3f} s (< 1 s)")
        check(isinstance(text, str) and 'qcowscope_image_status{image="slow.qcow2",status="stalled"} 1' in text,
              "/metrics counts slow.qcow2 as stalled")
        # Many more requests for the stalled image neither wait nor take threads.
        before = threads_of(proc.pid)
        t0 = time.monotonic()
        codes = [get(base, "/v1/images/slow.qcow2/bitmaps")[0] for _ in range(30)]
        took = time.monotonic() - t0
        after = threads_of(proc.pid)
        check(all(c == 503 for c in codes) and took < 2.0, f"30 more requests for the stalled image: {set(codes)} in {took:.2f} s")
        check(after <= before + 2 and after < 80, f"threads stay bounded: {before} before, {after} after")
        check(get(base, "/healthz")[0] == 200, "healthz still answers")
        # The check (and the scrubber, which runs here with its defaults) obeys the same rule.
        status, _, doc, took = get(base, "/v1/images/slow.qcow2/check")
        check(status == 503 and took < 0.5 and isinstance(doc, dict) and doc.get("type", "").endswith(":image-stalled"),
              f"/check of the stalled image: {status} in {took:.3f} s (503 image-stalled at once)")
        status, _, doc, took = get(base, "/v1/images/ok.qcow2/check")
        check(status == 200 and took < 2.0 and isinstance(doc, dict) and doc.get("state") == "clean",
              f"/check of ok.qcow2 while slow.qcow2 stalls: {status} {doc.get('state') if isinstance(doc, dict) else doc} in {took:.3f} s")
        print(f"    stall scenario: {time.monotonic() - started:.1f} s")

        # --- errors: EIO, short reads, a file that ends early ------------------------------------
        status, headers, doc, _ = get(base, "/v1/images/eio.qcow2")
        err = doc.get("error", {}) if isinstance(doc, dict) else {}
        check(status == 503 and doc.get("type", "").endswith(":io-error") and err.get("value") == "EIO"
              and isinstance(err.get("offset"), int), f"EIO: {status} {doc}")
        status, _, doc, _ = get(base, "/v1/images")
        listed = {i["name"]: i for i in doc.get("images", [])}
        check(listed.get("eio.qcow2", {}).get("status") == "unreadable"
              and listed["eio.qcow2"].get("error", {}).get("value") == "EIO", f"listing shows the EIO: {listed.get('eio.qcow2')}")
        status, _, doc, _ = get(base, "/v1/images/short.qcow2")
        check(status == 200 and doc.get("virtual_size") == 64 << 20, f"short reads are retried: {status}")
        status, _, doc, _ = get(base, "/v1/images/shrunk.qcow2/bitmaps")
        check(status in (422, 503) and isinstance(doc, dict) and isinstance(doc.get("error", {}).get("offset"), int),
              f"reads that end early (the file shrank): {status} {doc.get('type') if isinstance(doc, dict) else doc}")
        set_rules(control, [stall])
        status, _, doc, _ = get(base, "/v1/images/eio.qcow2")
        check(status == 200, f"nothing cached from the failed read: eio.qcow2 answers {status} once EIO is gone")
        _, _, text, _ = get(base, "/metrics")
        check('qcowscope_image_status{image="eio.qcow2",status="ok"} 1' in text, "metrics follow the recovery")
        errors_line = [l for l in str(text).splitlines() if l.startswith('qcowscope_image_io_errors_total{image="eio.qcow2"}')]
        check(errors_line and float(errors_line[0].split()[-1]) >= 1, f"metrics count eio.qcow2's I/O errors: {errors_line}")

        # --- a stalled backing layer: the overlay's map times out, nothing else waits -------------
        base_stall = {"file": "base.qcow2", "op": "read", "from": 0, "fault": "stall", "seconds": 40, "interruptible": True}
        set_rules(control, [stall, base_stall])
        status, _, doc, took = get(base, "/v1/images/top.qcow2/map?length=2097152")
        check(status == 504 and took < 3.0 and isinstance(doc, dict) and doc.get("type", "").endswith(":io-timeout")
              and doc.get("image") == "top.qcow2" and doc.get("file") == "base.qcow2" and isinstance(doc.get("offset"), int),
              f"map of top.qcow2 while its backing file stalls: {status} after {took:.2f} s (504 io-timeout at the 2 s "
              f"deadline, naming base.qcow2 and the offset): {doc}")
        for route in ["map", "chain", "allocation", "checkpoints"]:
            status, headers, doc, took = get(base, f"/v1/images/top.qcow2/{route}")
            check(status == 503 and took < 0.5 and isinstance(doc, dict) and doc.get("type", "").endswith(":image-stalled")
                  and doc.get("file") == "base.qcow2" and "Retry-After" in headers,
                  f"then /{route} of top.qcow2: {status} in {took:.3f} s (503 image-stalled at once, file base.qcow2)")
        for path in ["/healthz", "/v1/images/ok.qcow2", "/v1/images/ok.qcow2/map"]:
            status, _, _, took = get(base, path)
            check(status == 200 and took < 0.5, f"while base.qcow2 stalls: {path} {status} in {took:.3f} s (< 0.5 s)")
        status, _, _, took = get(base, "/v1/images/top.qcow2/header")
        check(status in (200, 503) and took < 0.5, f"top.qcow2's own header: {status} in {took:.3f} s, at once")
        status, _, doc, took = get(base, "/v1/images")
        check(status == 200 and took < 1.5, f"listing while base.qcow2 stalls: {status} in {took:.3f} s")
        set_rules(control, [stall])

        # --- SIGTERM while reads stall -----------------------------------------------------------
        waiting = [threading.Thread(target=get, args=(base, "/v1/images/slow.qcow2/findings")) for _ in range(2)]
        set_rules(control, [dict(stall, **{"from": 0})])
        for t in waiting:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t0
        check(rc == 0 and took < 10.0, f"SIGTERM while reads stall: exit {rc} after {took:.2f} s (< 10 s)")

        # --- the CLI gives up too: --io-timeout --------------------------------------------------
        cli = os.path.join(os.path.dirname(daemon), "qcowscope")
        t0 = time.monotonic()
        run = subprocess.run([cli, "header", os.path.join(mnt, "slow.qcow2"), "--io-timeout", "1"],
                             capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
        check(run.returncode == 1 and took < 3.0 and "storage did not answer within 1.0 s" in run.stderr,
              f"CLI on a stalled file: exit {run.returncode} after {took:.2f} s: {run.stderr.strip()!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        set_rules(control, [])
        fs.send_signal(signal.SIGTERM)
        try:
            fs.wait(10)
        except subprocess.TimeoutExpired:
            fs.kill()
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        log.close()
        fs_log.close()
        if failures:
            print(f"storage-faults: daemon log kept in {work}/daemon.log")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"storage-faults: {'FAIL' if failures else 'PASS'} ({len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
