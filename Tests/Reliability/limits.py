#!/usr/bin/python3
"""Descriptors and memory are bounded (issue 17): the daemon answers or refuses cleanly, never crashes.

Usage: limits.py DAEMON_BINARY

1. RLIMIT_NOFILE 64 (prlimit), 1,000 images, 300 connections at once: every request is answered
   200 or 503 (nothing is reset or left hanging), the daemon lives, and once the load is gone every
   image answers 200 and the listing of all 1,000 is complete.
2. A memory cgroup of 64 MiB (cgroup v1 `memory`, or v2): every endpoint on every hostile image (a
   1,048,576-entry bitmap table, 65,535 bitmaps, 393,216 would-be findings) answers within the I/O
   deadline, and the kernel never kills the daemon (no OOM kill).

Where a cgroup cannot be made the test fails with one clear line (it is never skipped).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from reliability import check, failures, free_port  # noqa: E402


def get(base, path, timeout=60):
    t0 = time.monotonic()
    req = urllib.request.Request(base + path, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    return status, body, time.monotonic() - t0


def wait_ready(base, proc):
    for _ in range(200):
        if proc.poll() is not None:
            return False
        try:
            if get(base, "/healthz", timeout=1)[0] == 200:
                return True
        except OSError:
            time.sleep(0.05)
    return False


def descriptors(daemon, work):
    images = os.path.join(work, "many")
    os.makedirs(images)
    first = os.path.join(images, "img-0000.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", first, "16M"], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", first, "b0"], check=True)
    for i in range(1, 1000):
        shutil.copyfile(first, os.path.join(images, f"img-{i:04d}.qcow2"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, "descriptors.log"), "w")
    proc = subprocess.Popen(["prlimit", "--nofile=64:64", "--", daemon, "--images", images, "--listen", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        check(wait_ready(base, proc), "the daemon starts under RLIMIT_NOFILE 64")
        statuses, errors = [], []
        lock = threading.Lock()

        def client(n):
            for k in range(3):
                path = f"/v1/images/img-{(n * 7 + k * 131) % 1000:04d}.qcow2" + ("/bitmaps" if k == 1 else "")
                try:
                    status, _, _ = get(base, path, timeout=60)
                    with lock:
                        statuses.append(status)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(f"{path}: {e}")

        t0 = time.monotonic()
        clients = [threading.Thread(target=client, args=(n,)) for n in range(300)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(120)
        took = time.monotonic() - t0
        counts = {s: statuses.count(s) for s in set(statuses)}
        check(proc.poll() is None, "the daemon is alive after 300 connections at once")
        check(not errors and set(statuses) <= {200, 503} and len(statuses) == 900,
              f"900 requests from 300 connections: {counts}, {len(errors)} errors {errors[:3]} in {took:.1f} s")
        # The load is gone: everything answers again.
        bad = [i for i in range(0, 1000, 20) if get(base, f"/v1/images/img-{i:04d}.qcow2")[0] != 200]
        check(not bad, f"after the load every image answers 200 (50 sampled; failing: {bad[:5]})")
        status, body, took = get(base, "/v1/images?limit=1000")
        listed = json.loads(body).get("images", []) if status == 200 else []
        ok = [i for i in listed if i.get("status") == "ok"]
        check(status == 200 and len(listed) == 1000 and len(ok) == 1000,
              f"listing of 1,000 images under 64 descriptors: {status}, {len(listed)} listed, {len(ok)} ok, {took:.2f} s")
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        check(fds <= 64, f"descriptors in use: {fds} (limit 64)")
    finally:
        proc.kill()
        proc.wait()
        log.close()


def make_cgroup(name, limit):
    """A memory cgroup limited to `limit` bytes: (procs file, OOM-kill count, peak usage, cleanup)."""
    v1 = "/sys/fs/cgroup/memory"
    if os.path.isdir(v1):
        path = os.path.join(v1, name)
        os.mkdir(path)
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit))
        swap = os.path.join(path, "memory.memsw.limit_in_bytes")
        if os.path.exists(swap):
            with open(swap, "w") as f:
                f.write(str(limit))

        def kills():
            with open(os.path.join(path, "memory.oom_control")) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
            return 0

        def peak():
            with open(os.path.join(path, "memory.max_usage_in_bytes")) as f:
                return int(f.read())

        return os.path.join(path, "cgroup.procs"), kills, peak, lambda: os.rmdir(path)
    v2 = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(v2, "cgroup.controllers")):
        path = os.path.join(v2, name)
        os.mkdir(path)
        with open(os.path.join(path, "memory.max"), "w") as f:
            f.write(str(limit))
        with open(os.path.join(path, "memory.swap.max"), "w") as f:
            f.write("0")

        def kills():
            with open(os.path.join(path, "memory.events")) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
            return 0

        def peak():
            try:
                with open(os.path.join(path, "memory.peak")) as f:
                    return int(f.read())
            except OSError:
                return -1

        return os.path.join(path, "cgroup.procs"), kills, peak, lambda: os.rmdir(path)
    raise OSError("no cgroup memory controller under /sys/fs/cgroup")


def memory(daemon, work):
    images = os.path.join(work, "hostile")
    os.makedirs(images)
    mk = os.path.join(HERE, "..", "Benchmarks", "mkimages.py")
    for kind in ["table", "bitmaps", "findings"]:
        subprocess.run(["/usr/bin/python3", mk, kind, os.path.join(images, f"{kind}.qcow2")], check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", os.path.join(images, "plain.qcow2"), "1G"], check=True)
    name = f"qcowscope-limits-{os.getpid()}"
    try:
        procs, kills, peak, cleanup = make_cgroup(name, 64 << 20)
    except OSError as e:
        check(False, f"cannot make a 64 MiB memory cgroup here ({e}); this test needs a writable cgroup memory controller")
        return
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, "memory.log"), "w")
    proc = subprocess.Popen(["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"', daemon, "--images", images,
                             "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        check(wait_ready(base, proc), "the daemon starts in a 64 MiB memory cgroup")
        with open(procs) as f:
            check(str(proc.pid) in f.read().split(), "the daemon runs inside the cgroup")
        answered = slowest = 0.0
        statuses = {}
        for image in sorted(os.listdir(images)):
            q = urllib.parse.quote(image)
            paths = [f"/v1/images/{q}{v}" for v in ["", "/header", "/extensions", "/bitmaps", "/bitmaps?limit=1000",
                                                    "/snapshots", "/findings", "/findings?limit=10000", "/locks", "/check",
                                                    "/checkpoints", "/checkpoints?limit=1000"]]
            status, body, _ = get(base, f"/v1/images/{q}/bitmaps?limit=3")
            if status == 200:
                for b in json.loads(body).get("bitmaps", [])[:3]:
                    bq = "".join(f"%{c:02X}" for c in bytes.fromhex(b["name_hex"]))
                    paths += [f"/v1/images/{q}/bitmaps/{bq}{v}" for v in ["", "/table", "/table?limit=4096", "/extents",
                                                                          "/extents?all=true"]]
                    paths += [f"/v1/images/{q}/checkpoints/{bq}{v}" for v in ["", "/extents", "/extents?limit=10000"]]
            paths += ["/v1/images", "/metrics"]
            for path in paths:
                if proc.poll() is not None:
                    break
                status, _, took = get(base, path)
                statuses[status] = statuses.get(status, 0) + 1
                answered += 1
                slowest = max(slowest, took)
                check(status < 500 or status == 503, f"{path}: {status} in {took:.2f} s") if status >= 500 else None
        hwm = "?"
        if proc.poll() is None:
            with open(f"/proc/{proc.pid}/status") as f:
                hwm = next((l.split()[1] for l in f if l.startswith("VmHWM:")), "?")
        check(proc.poll() is None and kills() == 0,
              f"{int(answered)} answers on hostile images in 64 MiB: statuses {statuses}, slowest {slowest:.2f} s, "
              f"daemon {'alive' if proc.poll() is None else 'dead'}, OOM kills {kills()}, peak RSS {hwm} kB, "
              f"cgroup peak {peak() / 1048576:.1f} MiB (page cache included)")
        check(slowest < 10.0, f"every answer within its budget (slowest {slowest:.2f} s)")
    finally:
        proc.kill()
        proc.wait()
        log.close()
        time.sleep(0.2)
        try:
            cleanup()
        except OSError:
            pass


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    work = tempfile.mkdtemp(prefix="qcowscope-limits-")
    try:
        descriptors(sys.argv[1], work)
        memory(sys.argv[1], work)
    finally:
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"limits: logs kept in {work}")
    print(f"limits: {'FAIL' if failures else 'PASS'} ({len(failures)} failed)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
