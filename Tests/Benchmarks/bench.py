#!/usr/bin/env python3
"""qcowscope benchmark driver (started by Tests/Benchmarks/run.sh, which installs tools and builds).

Runs every measurement and every reference in one run on the same images, prints one table and
writes results.json. Figures are ratios to a reference measured in the same run; absolute numbers
are printed too and never asserted. Standard library only.
"""
import argparse
import array
import struct
import ctypes
import datetime
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONNECTION_LIMIT = 1024  # qcowscoped --connection-limit, the C floor's MHD_OPTION_CONNECTION_LIMIT
TIMEOUT_S = 30           # qcowscoped --timeout, MHD_OPTION_CONNECTION_TIMEOUT, nginx keepalive_timeout
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---------------------------------------------------------------------------------------------
# Processes: every child gets PR_SET_PDEATHSIG, is tracked, and is stopped by its pid on exit.

_children = []
_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup(cpus):
    def setup():
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the driver
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


class Failure(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Proc:
    def __init__(self, name, argv, cpus, logdir, stdout_file=True):
        self.name = name
        self.out_path = os.path.join(logdir, name + ".out")
        self.err_path = os.path.join(logdir, name + ".err")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                                  preexec_fn=_child_setup(cpus))
        self.pid = self.p.pid
        _children.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()
        self.err.close()

    def tail(self):
        text = ""
        for path in (self.out_path, self.err_path):
            with open(path, "rb") as f:
                text += f.read()[-2000:].decode(errors="replace")
        return text


def stop_all():
    while _children:
        _children.pop().stop()


def run(argv, what, cpus=None, timeout=None, capture=True):
    """Runs a tool to completion; any non-zero exit is a Failure naming the tool and its stderr."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=capture, timeout=timeout,
                           preexec_fn=_child_setup(cpus))
    except subprocess.TimeoutExpired:
        raise Failure(f"{what}: timed out after {timeout} s: {shlex.join(argv)}")
    if r.returncode != 0:
        err = (r.stderr or b"").decode(errors="replace").strip()[-1500:]
        raise Failure(f"{what}: exit {r.returncode}: {shlex.join(argv)}\n{err}")
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise Failure(f"{proc.name} exited with {proc.p.returncode} before listening:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise Failure(f"{proc.name} is not listening on port {port} after {timeout} s:\n{proc.tail()}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure(f"no VmRSS for pid {pid}")


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) and of its direct children (nginx workers)."""
    tick = os.sysconf("SC_CLK_TCK")

    def one(p):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick  # ppid, utime + stime
        except (OSError, IndexError, ValueError):
            return None, 0.0

    total = one(pid)[1]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != pid:
            ppid, t = one(int(entry))
            if ppid == pid:
                total += t
    return total


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise Failure(f"no rchar for pid {pid}")


# ---------------------------------------------------------------------------------------------
# A keep-alive HTTP/1.1 client on a raw socket: a few microseconds of client overhead per request,
# the same for every path, so sequential latencies compare.

class Client:
    def __init__(self, port):
        self.port = port
        self.sock = None

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get(self, path):
        """Returns (status, body, seconds) of one GET; reconnects once if the server closed the connection."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            start = time.perf_counter_ns()
            try:
                self.sock.sendall(request)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("closed")
                    buf += chunk
                head, body = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                status = int(lines[0].split(b" ")[1])
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v.strip())
                parts = [body]
                have = len(body)
                while have < length:
                    chunk = self.sock.recv(max(65536, length - have))
                    if not chunk:
                        raise ConnectionResetError("closed")
                    parts.append(chunk)
                    have += len(chunk)
                elapsed = (time.perf_counter_ns() - start) / 1e9
                return status, b"".join(parts), elapsed
            except (ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError

    def ok(self, path):
        status, body, elapsed = self.get(path)
        if status != 200:
            raise Failure(f"GET {path} on port {self.port}: status {status}: {body[:300]!r}")
        return elapsed

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


def stats(samples):
    s = sorted(samples)
    def pct(p):
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]
    return {"n": len(s), "median_s": statistics.median(s), "p90_s": pct(90), "p99_s": pct(99),
            "min_s": s[0], "max_s": s[-1]}


# ---------------------------------------------------------------------------------------------
# Formatting

def fmt_time(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n):
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} B"


def fmt_rate(r):
    return f"{r:,.0f}/s"


def socket_errors(*results):
    """A note when wrk saw connect/read/write/timeout errors (status errors abort the run)."""
    notes = []
    for r in results:
        e = {k: v for k, v in r["errors"].items() if v and k != "status"}
        if e:
            notes.append(", ".join(f"{k} {v}" for k, v in e.items()))
    return ("wrk socket errors: " + "; ".join(notes)) if notes else ""


def fmt_wrk(w):
    return (f"{fmt_rate(w['rps'])} p50 {fmt_time(w['p50_us'] / 1e6)} p99 {fmt_time(w['p99_us'] / 1e6)} "
            f"CPU {w['server_cpu_us_per_request']:.0f} µs/req")


def wrk_note(q, ref):
    """CPU per request ratio (robust on a busy machine), and a warning when wrk itself was the limit."""
    notes = []
    if ref["server_cpu_us_per_request"] > 0:
        notes.append(f"CPU/req ratio {q['server_cpu_us_per_request'] / ref['server_cpu_us_per_request']:.2f}")
    bound = [n for n, r in (("qcowscoped", q), ("reference", ref)) if r["wrk_cpu_utilization"] > 0.9]
    if bound:
        notes.append("wrk ≥90% busy for " + " and ".join(bound) + ": that rate is a lower bound")
    return "; ".join(notes)


class Report:
    def __init__(self):
        self.rows = []

    def add(self, section, key, measurement, value, value_text, reference=None, ref_value=None, ref_text="",
            ratio=None, note="", extra=None):
        if ratio is None and value is not None and ref_value:
            ratio = value / ref_value
        self.rows.append(dict(section=section, id=key, measurement=measurement, value=value, value_text=value_text,
                              reference=reference, reference_value=ref_value, reference_text=ref_text,
                              ratio=ratio, note=note, extra=extra or {}))

    def table(self):
        headers = ("#", "measurement", "qcowscoped", "reference", "ratio")
        lines = []
        body = []
        for r in self.rows:
            ref = (r["reference"] or "") + (" " + r["reference_text"] if r["reference_text"] else "")
            x = r["ratio"]
            ratio = "-" if x is None else f"{x:.1e}" if x < 0.001 else f"{x:.3f}" if x < 10 else f"{x:,.0f}"
            body.append((str(r["section"]), r["measurement"], r["value_text"], ref.strip() or "-", ratio, r["note"]))
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        fmt = "  ".join("{:<%d}" % w for w in widths[:-1]) + "  {:>%d}" % widths[-1]
        lines.append(fmt.format(*headers))
        lines.append("  ".join("-" * w for w in widths))
        last = None
        for b in body:
            if last is not None and b[0] != last:
                lines.append("")
            last = b[0]
            lines.append(fmt.format(*b[:5]) + (f"   {b[5]}" if b[5] else ""))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.a = args
        self.quick = args.quick
        self.report = Report()
        self.raw = os.path.join(args.out, "raw")
        shutil.rmtree(self.raw, ignore_errors=True)
        os.makedirs(self.raw)
        self.work = tempfile.mkdtemp(prefix="run.", dir=args.out)
        os.chmod(self.work, 0o755)  # nginx workers may run as another user
        self.logdir = os.path.join(self.work, "logs")
        os.makedirs(self.logdir)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            half = (len(cpus) + 1) // 2
            self.server_cpus, self.client_cpus = cpus[:half], cpus[half:]
            self.pinning = (f"servers pinned to CPU {','.join(map(str, self.server_cpus))}, load generators/clients "
                            f"to CPU {','.join(map(str, self.client_cpus))} (taskset/sched_setaffinity)")
        else:
            self.server_cpus = self.client_cpus = None
            self.pinning = "1 core: nothing pinned (servers and load generators share the core)"
        self.threads = args.threads or (len(self.server_cpus) if self.server_cpus else 1)
        self.wrk_threads = max(1, len(self.client_cpus) if self.client_cpus else 1)
        self.duration = args.duration or (3 if self.quick else 10)
        self.warmup = 1 if self.quick else 2
        self.n_seq = 150 if self.quick else 1000      # sequential samples per path
        self.n_cold = 30 if self.quick else 200       # cold/cached pairs
        self.qcowscoped = os.path.join(args.bin_dir, "qcowscoped")
        self.qcowscope = os.path.join(args.bin_dir, "qcowscope")
        self.servers = {}
        self.targets = []

    # -- setup -------------------------------------------------------------------------------

    def cpuset(self, which):
        cpus = self.server_cpus if which == "server" else self.client_cpus
        return set(cpus) if cpus else None

    def taskset(self, which):
        cpus = self.server_cpus if which == "server" else self.client_cpus
        return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []

    def make_images(self):
        log("images: demo set (qemu-img), crafted table and bitmap images, 10,000-image directory (hard links)")
        self.main_dir = os.path.join(self.work, "images")
        run(["bash", os.path.join(ROOT, "Tests/Scripts/make-demo-images.sh"), self.main_dir], "make-demo-images.sh")
        self.table_image = os.path.join(self.main_dir, "table-1m.qcow2")
        mk = os.path.join(HERE, "mkimages.py")
        run([sys.executable, mk, "table", self.table_image], "mkimages.py table")
        # QEMU must open the crafted images: the table image as is, the bitmap layout at 2,000
        # bitmaps (qemu-img info of the 65,535-bitmap image takes 45 s to 2 min).
        info = json.loads(run(["qemu-img", "info", "--output=json", self.table_image], "qemu-img info table-1m").stdout)
        names = [b["name"] for b in info["format-specific"]["data"]["bitmaps"]]
        if names != ["big", "small"]:
            raise Failure(f"qemu-img info table-1m.qcow2: unexpected bitmaps {names}")
        run(["qemu-img", "check", self.table_image], "qemu-img check table-1m")
        self.bitmaps_dir = os.path.join(self.work, "bitmaps")
        os.makedirs(self.bitmaps_dir)
        probe = os.path.join(self.work, "bitmaps-2000.qcow2")
        run([sys.executable, mk, "bitmaps", probe, "2000"], "mkimages.py bitmaps 2000")
        info = json.loads(run(["qemu-img", "info", "--output=json", probe], "qemu-img info bitmaps-2000").stdout)
        if len(info["format-specific"]["data"]["bitmaps"]) != 2000:
            raise Failure("qemu-img info bitmaps-2000.qcow2 does not list 2000 bitmaps")
        run(["qemu-img", "check", probe], "qemu-img check bitmaps-2000")
        os.unlink(probe)
        self.many_image = os.path.join(self.bitmaps_dir, "bitmaps-65535.qcow2")
        run([sys.executable, mk, "bitmaps", self.many_image, "65535"], "mkimages.py bitmaps 65535")
        # 4,096 bitmaps sharing one table whose entries set reserved bits: 393,216 would-be findings.
        self.findings_image = os.path.join(self.bitmaps_dir, "findings.qcow2")
        run([sys.executable, mk, "findings", self.findings_image], "mkimages.py findings")
        # 10,000 names for a small real image: hard links (no disk space, fast to make and remove; the
        # daemon caches and parses per name), copies where the filesystem has no hard links.
        self.scale_dir = os.path.join(self.work, "scale")
        os.makedirs(self.scale_dir)
        src = os.path.join(self.main_dir, "plain.qcow2")
        for i in range(10000):
            dst = os.path.join(self.scale_dir, f"img-{i:05d}.qcow2")
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)

    def start_listening(self, name, make_argv):
        """Starts a server on a free loopback port; tries another port if that one was taken meanwhile."""
        for attempt in range(3):
            port = free_port()
            p = Proc(name, make_argv(port), None, self.logdir)
            try:
                wait_listening(p, port)
            except Failure:
                p.stop()
                _children.remove(p)
                if attempt == 2 or "in use" not in p.tail().lower():
                    raise
                continue
            p.port = port
            return p

    def start_qcowscoped(self, name, images, level="warning", extra=()):
        p = self.start_listening(name, lambda port: self.taskset("server") + [
            self.qcowscoped, "--images", images, "--listen", f"127.0.0.1:{port}", "--threads", str(self.threads),
            "--connection-limit", str(CONNECTION_LIMIT), "--timeout", str(TIMEOUT_S), "--log-level", level,
            *extra])
        self.servers[name] = p
        return p

    def start_servers(self):
        log(f"servers: qcowscoped x4, threads {self.threads}; {self.pinning}")
        self.q = self.start_qcowscoped("qcowscoped", self.main_dir)
        self.qlog = self.start_qcowscoped("qcowscoped-accesslog", self.main_dir, level="info")
        self.qscale = self.start_qcowscoped("qcowscoped-10k", self.scale_dir)
        self.qmany = self.start_qcowscoped("qcowscoped-65535", self.bitmaps_dir)
        self.idle_rss = {k: rss_kib(v.pid) for k, v in self.servers.items()}

    def section1_paths(self):
        """(key, path, label): each path once; labels are short, the paths are in results.json."""
        return [
            ("healthz", "/healthz", "/healthz"),
            ("summary", "/v1/images/bitmaps.qcow2", "/v1/images/{image} (cached)"),
            ("header", "/v1/images/bitmaps.qcow2/header", "/v1/images/{image}/header (cached)"),
            ("bitmaps", "/v1/images/bitmaps.qcow2/bitmaps", "/v1/images/{image}/bitmaps (2 bitmaps)"),
            ("table", "/v1/images/table-1m.qcow2/bitmaps/big/table?offset=524288&limit=256",
             "table page: 256 entries of 1M"),
            ("listing", "/v1/images?limit=100", "/v1/images?limit=100 (10 images)"),
        ]

    def start_floors(self):
        """Fetches each path from qcowscoped with curl, then serves the same bytes from the C floor and nginx."""
        static = os.path.join(self.work, "static")
        os.makedirs(static)
        os.chmod(static, 0o755)
        manifest = []
        self.bodies = {}
        for key, path, _ in self.section1_paths():
            f = os.path.join(static, key + ".json")
            fields = f + ".fields"
            run(["curl", "-sS", "--fail", "-D", fields + ".raw", "-o", f, f"http://127.0.0.1:{self.q.port}{path}"], f"curl {path}")
            os.chmod(f, 0o644)
            # The floor sends qcowscoped's own header fields with the body (libmicrohttpd adds Date and
            # Content-Length to both).
            with open(fields + ".raw", "rb") as fh:
                lines = fh.read().decode("latin-1").split("\r\n")[1:]
            skip = {"date", "content-length", "connection", "keep-alive", "transfer-encoding"}
            with open(fields, "w") as fh:
                for line in lines:
                    if ":" in line and line.split(":", 1)[0].strip().lower() not in skip:
                        fh.write(line + "\n")
            with open(f, "rb") as fh:
                self.bodies[key] = fh.read()
            manifest.append((path.split("?")[0], f, fields))
        if len({p for p, _, _ in manifest}) != len(manifest):
            raise Failure("section 1 paths must differ without their query (the floors ignore it)")
        mpath = os.path.join(self.work, "floor.manifest")
        with open(mpath, "w") as fh:
            for p, f, fields in manifest:
                fh.write(f"{p}\t{f}\t{fields}\n")
        self.floor = self.start_listening("c-floor", lambda port: self.taskset("server") + [
            self.a.floor, mpath, str(self.threads), str(port), str(CONNECTION_LIMIT), str(TIMEOUT_S)])
        # nginx: static files, same bytes, keep-alive, no access log, worker_processes = server threads.
        nginx_dir = os.path.join(self.work, "nginx")
        os.makedirs(nginx_dir)
        port = free_port()
        locations = "\n".join(f"        location = {p} {{ alias {json.dumps(f)}; }}" for p, f, _ in manifest)
        temp = "\n".join(f"    {k}_temp_path {nginx_dir}/{k};" for k in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""# generated by Tests/Benchmarks/bench.py
daemon off;
master_process on;
{"user root;" if os.geteuid() == 0 else ""}
worker_processes {self.threads};
pid {nginx_dir}/nginx.pid;
error_log {nginx_dir}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    types {{ }}
    default_type application/json;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout {TIMEOUT_S}s;
    keepalive_requests 1000000000;
    open_file_cache max=64 inactive=60s;
    open_file_cache_valid 60s;
{temp}
    server {{
        listen 127.0.0.1:{port} backlog=128;
{locations}
        location / {{ return 404; }}
    }}
}}
"""
        cpath = os.path.join(nginx_dir, "nginx.conf")
        with open(cpath, "w") as fh:
            fh.write(conf)
        run(["nginx", "-t", "-q", "-p", nginx_dir, "-e", os.path.join(nginx_dir, "error.log"), "-c", cpath],
            "nginx -t")
        self.nginx = Proc("nginx", self.taskset("server") + ["nginx", "-p", nginx_dir, "-e",
                                                             os.path.join(nginx_dir, "error.log"), "-c", cpath],
                          None, self.logdir)
        wait_listening(self.nginx, port)
        self.nginx.port = port
        self.nginx_conf, self.nginx_dir = conf, nginx_dir
        # Every floor must answer every path with exactly qcowscoped's bytes.
        for server in (self.floor, self.nginx):
            for key, path, _ in self.section1_paths():
                got = run(["curl", "-sS", "--fail", f"http://127.0.0.1:{server.port}{path}"], f"curl {server.name}").stdout
                if got != self.bodies[key]:
                    raise Failure(f"{server.name} does not serve qcowscoped's bytes for {path}")

    # -- measurements --------------------------------------------------------------------------

    def wrk(self, server, path, duration, label, connections=64):
        url = f"http://127.0.0.1:{server.port}{path}"
        argv = self.taskset("client") + ["wrk", "-t", str(self.wrk_threads), "-c", str(connections), "-d", f"{duration}s",
                                         "--latency", "-s", os.path.join(HERE, "report.lua"), url]
        server_cpu = cpu_seconds(server.pid)
        client_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = run(argv, f"wrk {url}", timeout=duration + 60)
        server_cpu = cpu_seconds(server.pid) - server_cpu
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (after.ru_utime - client_cpu.ru_utime) + (after.ru_stime - client_cpu.ru_stime)
        out = r.stdout.decode(errors="replace")
        with open(os.path.join(self.raw, f"wrk-{label}.txt"), "a") as fh:
            fh.write(f"$ {shlex.join(argv)}\n{out}\n")
        m = re.search(r"^BENCH-JSON (.*)$", out, re.M)
        if not m:
            raise Failure(f"wrk printed no result for {url}:\n{out[-1500:]}")
        res = json.loads(m.group(1))
        if res["errors"]["status"]:
            raise Failure(f"wrk {url}: {res['errors']['status']} non-2xx/3xx responses")
        if res["requests"] == 0:
            raise Failure(f"wrk {url}: no request completed")
        seconds = res["duration_us"] / 1e6
        res["server_cpu_s"] = server_cpu
        res["server_cpu_us_per_request"] = server_cpu / res["requests"] * 1e6
        res["server_cpu_utilization"] = server_cpu / seconds / (len(self.server_cpus) if self.server_cpus else 1)
        res["wrk_cpu_utilization"] = client_cpu / seconds / self.wrk_threads
        return res

    def load(self, server, path, label, connections=64):
        self.wrk(server, path, self.warmup, label + "-warmup", connections)
        return self.wrk(server, path, self.duration, label, connections)

    def section1(self):
        log(f"1. throughput: wrk -t{self.wrk_threads} -c64 -d{self.duration}s --latency, "
            f"qcowscoped vs C floor vs nginx, {len(self.section1_paths())} paths")
        self.wrk_results = {}
        # The default configuration: log level info, so the access log is on (its stderr goes to a file).
        servers = [("qcowscoped", self.qlog), ("C floor", self.floor), ("nginx", self.nginx)]
        for key, path, label in self.section1_paths():
            res = {}
            for name, server in servers:
                res[name] = self.load(server, path, f"{key}-{name.replace(' ', '-')}")
                log(f"   {label:<40} {name:<10} {fmt_wrk(res[name])}")
            self.wrk_results[key] = res
            q = res["qcowscoped"]
            size = len(self.bodies[key])
            for ref in ("C floor", "nginx"):
                self.report.add(1, f"rps.{key}.vs_{ref.split()[0].lower()}", f"req/s {label}, {fmt_bytes(size)}",
                                q["rps"], fmt_wrk(q), ref, res[ref]["rps"], fmt_wrk(res[ref]),
                                note="; ".join(x for x in (wrk_note(q, res[ref]), socket_errors(q, res[ref])) if x),
                                extra={"path": path, "qcowscoped": q, "reference": res[ref], "body_bytes": size})
        res = self.load(self.q, "/healthz", "healthz-noaccesslog")
        base = self.wrk_results["healthz"]["qcowscoped"]
        self.report.add(1, "rps.healthz.accesslog", "req/s /healthz, access log on (the default, to a file)",
                        base["rps"], fmt_wrk(base), "access log off (log-level warning)", res["rps"], fmt_wrk(res),
                        note="; ".join(x for x in (wrk_note(base, res), socket_errors(res)) if x),
                        extra={"qcowscoped": base, "reference": res})
        log(f"   /healthz without access log: {fmt_wrk(res)}")
        # Latency under 256 connections: cached /header, p99 against the C floor's.
        self.wrk_256 = {}
        for name, server in (("qcowscoped", self.qlog), ("C floor", self.floor)):
            self.wrk_256[name] = self.load(server, "/v1/images/bitmaps.qcow2/header", f"header-256-{name.replace(' ', '-')}",
                                           connections=256)
        q, f = self.wrk_256["qcowscoped"], self.wrk_256["C floor"]
        self.report.add(1, "p99.header.256", "p99 latency cached /header, 256 connections", q["p99_us"] / 1e6,
                        fmt_time(q["p99_us"] / 1e6), "C floor", f["p99_us"] / 1e6, fmt_time(f["p99_us"] / 1e6),
                        note=f"req/s {fmt_rate(q['rps'])} vs {fmt_rate(f['rps'])}")

    def section2(self):
        image = os.path.join(self.main_dir, "bitmaps.qcow2")
        url = f"http://127.0.0.1:{self.q.port}/v1/images/bitmaps.qcow2"
        runs = 30 if self.quick else 200
        log(f"2. cost per answer: hyperfine --runs {runs} (curl, qcowscope info, qemu-img info), qemu-img rate")
        # Is `qcowscope info FILE` the same document as GET /v1/images/{image}?
        daemon_doc = json.loads(run(["curl", "-sS", "--fail", url], "curl summary").stdout)
        cli_cmd = [self.qcowscope, "info", "--format", "json", image]
        cli_note = ""
        try:
            cli_doc = json.loads(run(cli_cmd, "qcowscope info").stdout)
            cli_ok = True
            cli_note = "same JSON as the daemon" if cli_doc == daemon_doc else "JSON differs from the daemon's"
        except (Failure, ValueError) as e:
            cli_ok = False
            cli_note = f"qcowscope info failed: {str(e).splitlines()[0][:80]}"
            log(f"   {cli_note}")
        commands = [("curl", f"curl -s -o /dev/null {shlex.quote(url)}")]
        if cli_ok:
            commands.append(("qcowscope", shlex.join(cli_cmd)))
        commands.append(("qemu-img", shlex.join(["qemu-img", "info", "--output=json", image])))
        export = os.path.join(self.raw, "hyperfine.json")
        argv = self.taskset("client") + ["hyperfine", "-N", "--style", "basic", "--warmup", "5", "--runs", str(runs),
                                         "--export-json", export]
        for name, cmd in commands:
            argv += ["-n", name, cmd]
        r = run(argv, "hyperfine", timeout=900)
        with open(os.path.join(self.raw, "hyperfine.txt"), "wb") as fh:
            fh.write(r.stdout)
        with open(export) as fh:
            hf = {x["command"]: x for x in json.load(fh)["results"]}
        qemu = hf["qemu-img"]
        def hf_text(x):
            return f"{fmt_time(x['median'])} (mean {fmt_time(x['mean'])} ± {fmt_time(x['stddev'])})"
        qtext = hf_text(qemu)
        for name, label in (("curl", "one answer, median: curl -s GET /v1/images/{image}"),
                            ("qcowscope", "one answer, median: qcowscope info FILE")):
            if name not in hf:
                self.report.add(2, f"process.{name}", label, None, "n/a", "qemu-img info", None, qtext,
                                note=cli_note)
                continue
            x = hf[name]
            self.report.add(2, f"process.{name}", label, x["median"], hf_text(x),
                            "qemu-img info", qemu["median"], qtext,
                            note=cli_note if name == "qcowscope" else "",
                            extra={"hyperfine": x, "reference": qemu})
        # qemu-img info invocations per second with the daemon's cores, vs the daemon's wrk rate.
        count = 60 if self.quick else 400
        par = len(self.server_cpus) if self.server_cpus else 1
        # xargs (pinned like the daemon) starts the processes itself: no taskset exec per invocation.
        args_file = os.path.join(self.work, "qemu-img.args")
        with open(args_file, "w") as fh:
            fh.write((image + "\0") * count)
        start = time.perf_counter()
        run(self.taskset("server") + ["xargs", "-0", "-a", args_file, "-P", str(par), "-n", "1",
                                      "qemu-img", "info", "--output=json"], "qemu-img info rate loop (xargs)",
            timeout=900)
        elapsed = time.perf_counter() - start
        qrate = count / elapsed
        d = self.wrk_results["summary"]["qcowscoped"]
        self.report.add(2, "rate.vs_qemu_img", "answers/s: daemon (wrk, /v1/images/{image})",
                        d["rps"], fmt_rate(d["rps"]), f"qemu-img info x{count} ({par} parallel, server cores)",
                        qrate, fmt_rate(qrate), extra={"qemu_img_invocations": count, "parallel": par,
                                                        "seconds": elapsed})
        log(f"   qemu-img info: {qrate:.1f}/s; daemon {d['rps']:.0f}/s")

    def cold_vs_warm(self, client, image_path, path, n):
        cold, warm = [], []
        base = time.time_ns()
        for i in range(n):
            t = base + (i + 1) * 1_000_000
            os.utime(image_path, ns=(t, t))  # what `touch` does: new mtime and ctime, new file version
            cold.append(client.ok(path))
            warm.append(client.ok(path))
        return stats(cold), stats(warm)

    def section3(self):
        log(f"3. cold answer after touch vs cached, {self.n_cold} pairs each")
        c = Client(self.q.port)
        image = os.path.join(self.main_dir, "bitmaps.qcow2")
        for key, path, label in (("summary", "/v1/images/bitmaps.qcow2", "/v1/images/{image}"),
                                 ("header", "/v1/images/bitmaps.qcow2/header", "/header")):
            c.ok(path)
            cold, warm = self.cold_vs_warm(c, image, path, self.n_cold)
            self.report.add(3, f"cold.{key}", f"cold: {label} after touch, median of {cold['n']}",
                            cold["median_s"], f"{fmt_time(cold['median_s'])} (p90 {fmt_time(cold['p90_s'])})",
                            "cached", warm["median_s"], f"{fmt_time(warm['median_s'])} (p90 {fmt_time(warm['p90_s'])})",
                            extra={"cold": cold, "cached": warm})
        c.close()

    def strace_bytes(self, pid, client, path, k):
        """pread64 calls and bytes per request, summed over k requests (strace -f -p PID)."""
        out = os.path.join(self.work, "strace.txt")
        if os.path.exists(out):
            os.unlink(out)
        st = Proc("strace", ["strace", "-f", "-qq", "-e", "trace=pread64", "-p", str(pid), "-o", out], None,
                  self.logdir)
        deadline = time.monotonic() + 5
        # strace prints nothing when attached with -qq; wait until it traced a marker request.
        attached = False
        while time.monotonic() < deadline and st.alive():
            client.ok("/v1/images/table-1m.qcow2/bitmaps/small/table?offset=0&limit=1")
            if os.path.exists(out) and os.path.getsize(out) > 0:
                attached = True
                break
            time.sleep(0.05)
        if not attached:
            st.stop()
            _children.remove(st)
            return None
        time.sleep(0.2)
        with open(out) as fh:
            skip = len(fh.readlines())
        for _ in range(k):
            client.ok(path)
        time.sleep(0.3)
        st.stop()
        _children.remove(st)
        calls, total = 0, 0
        with open(out) as fh:
            for line in fh.readlines()[skip:]:
                m = re.search(r"pread64(?:\(| resumed>).*\)\s+=\s+(\d+)", line)  # also "<... pread64 resumed>"
                if m:
                    calls += 1
                    total += int(m.group(1))
        return calls / k, total / k

    def section4(self):
        log("4. table paging: 1,048,576-entry table (first vs last page) vs a 16-entry table; bytes read")
        c = Client(self.q.port)
        base = "/v1/images/table-1m.qcow2/bitmaps"
        last16 = (1 << 20) - 16
        last4k = (1 << 20) - 4096
        paths = {
            "first16": f"{base}/big/table?offset=0&limit=16",
            "last16": f"{base}/big/table?offset={last16}&limit=16",
            "small16": f"{base}/small/table?offset=0&limit=16",
            "first4096": f"{base}/big/table?offset=0&limit=4096",
            "last4096": f"{base}/big/table?offset={last4k}&limit=4096",
        }
        # Bytes read by the first request after the file changed: a table page (header and directory
        # re-read), then the summary (its findings run the whole-table checks T1-T5 once per version).
        def cold_read(path):
            t = time.time_ns()
            os.utime(self.table_image, ns=(t, t))
            before = rchar(self.q.pid)
            elapsed = c.ok(path)
            return rchar(self.q.pid) - before, elapsed

        cold_page = cold_read(paths["first16"])
        cold_summary = cold_read("/v1/images/table-1m.qcow2")
        samples = {k: [] for k in paths}
        n_small = self.n_seq
        n_big = max(10, self.n_seq // 20)
        for k, p in paths.items():
            c.ok(p)
        for i in range(n_small):
            for k in ("first16", "last16", "small16"):
                samples[k].append(c.ok(paths[k]))
            if i < n_big:
                for k in ("first4096", "last4096"):
                    samples[k].append(c.ok(paths[k]))
        s = {k: stats(v) for k, v in samples.items()}

        def t_(k):
            return f"{fmt_time(s[k]['median_s'])} (p99 {fmt_time(s[k]['p99_s'])})"

        self.report.add(4, "table.last_vs_first16", "1M-entry table, limit 16: last page vs first, median",
                        s["last16"]["median_s"], t_("last16"), "first page", s["first16"]["median_s"], t_("first16"),
                        extra={"last": s["last16"], "first": s["first16"]})
        self.report.add(4, "table.1m_vs_16", "limit 16, first page: 1M-entry vs 16-entry table, median",
                        s["first16"]["median_s"], t_("first16"), "16-entry table", s["small16"]["median_s"],
                        t_("small16"), extra={"big": s["first16"], "small": s["small16"]})
        self.report.add(4, "table.last_vs_first4096", f"1M-entry table, limit 4096: last page vs first, median of {n_big}",
                        s["last4096"]["median_s"], t_("last4096"), "first page", s["first4096"]["median_s"],
                        t_("first4096"), extra={"last": s["last4096"], "first": s["first4096"]})
        table_bytes = (1 << 20) * 8
        # Bytes read per request: rchar delta (pread bytes; MHD reads sockets with recv, which rchar does not count).
        k = 20
        labels = {"first16": "first page, limit 16", "last16": "last page, limit 16",
                  "small16": "16-entry table, limit 16", "last4096": "last page, limit 4096"}
        for key in ("first16", "last16", "small16", "last4096"):
            before = rchar(self.q.pid)
            for _ in range(k):
                c.ok(paths[key])
            per = (rchar(self.q.pid) - before) / k
            traced = self.strace_bytes(self.q.pid, c, paths[key], k) if shutil.which("strace") else None
            note = ("strace: " + f"{traced[0]:.1f} pread64/request, {traced[1]:,.0f} B/request") if traced else \
                "strace unavailable: rchar only"
            self.report.add(4, f"bytes.{key}", f"bytes read/request: {labels[key]} (rchar)",
                            per, f"{per:,.0f} B", "whole 1M table", table_bytes, fmt_bytes(table_bytes), note=note,
                            extra={"rchar_per_request": per, "strace_preads_per_request": traced and traced[0],
                                   "strace_bytes_per_request": traced and traced[1]})
        self.report.add(4, "bytes.cold_page", "bytes read: first table page after touch",
                        cold_page[0], f"{cold_page[0]:,} B in {fmt_time(cold_page[1])}", "whole 1M table",
                        table_bytes, fmt_bytes(table_bytes), note="header and directory re-read, then the page")
        self.report.add(4, "bytes.cold_summary", "bytes read: then GET /v1/images/table-1m.qcow2",
                        cold_summary[0], f"{cold_summary[0]:,} B in {fmt_time(cold_summary[1])}", "whole 1M table",
                        table_bytes, fmt_bytes(table_bytes),
                        note="findings: checks T1-T5 read each table once per file version")
        c.close()

    def section5(self):
        log("5. scale: 10,000-image directory; image with 65,535 bitmaps")
        c = Client(self.qscale.port)
        first = "/v1/images?limit=100"
        last = "/v1/images?cursor=img-09899.qcow2&limit=100"
        cold_first = c.ok(first)
        n = self.n_seq // 2
        warm_first = stats([c.ok(first) for _ in range(n)])
        cold_last = c.ok(last)
        warm_last = stats([c.ok(last) for _ in range(n)])
        _, body, _ = c.get(last)
        page = json.loads(body)
        if len(page["images"]) != 100 or page["next"] is not None or page["images"][-1]["name"] != "img-09999.qcow2":
            raise Failure("10,000-image listing: the last page is not img-09900..img-09999")
        start = time.perf_counter()
        cursor, pages, seen = None, 0, 0
        while True:
            status, body, _ = c.get("/v1/images?limit=1000" + (f"&cursor={cursor}" if cursor else ""))
            if status != 200:
                raise Failure(f"listing walk: status {status}")
            doc = json.loads(body)
            pages += 1
            seen += len(doc["images"])
            cursor = doc["next"]
            if not cursor:
                break
        walk = time.perf_counter() - start
        if seen != 10000:
            raise Failure(f"listing walk saw {seen} images, not 10,000")
        rss_walk = rss_kib(self.qscale.pid)
        after_walk_first = c.ok(first)
        # The same small page (limit 5, all cached) from the 10,000-image and from the 10-file directory.
        small = "/v1/images?limit=5"
        c.ok(small)
        cm = Client(self.q.port)
        cm.ok(small)
        big_dir, small_dir = [], []
        for _ in range(n):
            big_dir.append(c.ok(small))
            small_dir.append(cm.ok(small))
        big_dir, small_dir = stats(big_dir), stats(small_dir)
        cm.close()
        c.close()
        self.report.add(5, "scale.listing_last_vs_first",
                        f"10,000 images: listing last page vs first (limit 100), median of {n}",
                        warm_last["median_s"], fmt_time(warm_last["median_s"]), "first page",
                        warm_first["median_s"], fmt_time(warm_first["median_s"]),
                        extra={"last": warm_last, "first": warm_first, "first_cold_s": cold_first,
                               "last_cold_s": cold_last})
        self.report.add(5, "scale.listing_cold", "10,000 images: first listing request (100 images parsed)",
                        cold_first, fmt_time(cold_first), "same page cached", warm_first["median_s"],
                        fmt_time(warm_first["median_s"]),
                        note=f"again after walking all pages: {fmt_time(after_walk_first)}")
        self.report.add(5, "scale.listing_dir_size", "listing limit 5: 10,000-image vs 10-file directory, median",
                        big_dir["median_s"], fmt_time(big_dir["median_s"]), "10-file directory",
                        small_dir["median_s"], fmt_time(small_dir["median_s"]),
                        note="what a listing request costs per directory entry, not per page item",
                        extra={"big": big_dir, "small": small_dir})
        self.report.add(5, "scale.walk", f"10,000 images: walk all {pages} pages of limit 1000 (cold)",
                        walk, fmt_time(walk), "", None, "", note=f"{walk / 10000 * 1e6:.0f} µs per image")
        idle = self.idle_rss["qcowscoped-10k"]
        self.report.add(5, "scale.rss_10k", "10,000 images: daemon RSS after the walk", rss_walk,
                        f"{rss_walk / 1024:.1f} MiB", "at start", idle, f"{idle / 1024:.1f} MiB")
        # 65,535 bitmaps.
        c = Client(self.qmany.port)
        path = "/v1/images/bitmaps-65535.qcow2/bitmaps"
        first_ever = c.ok(path)
        n_cold = 2 if self.quick else 5
        cold, warm = self.cold_vs_warm(c, self.many_image, path, n_cold)
        warm_first = stats([c.ok(path) for _ in range(max(20, self.n_seq // 10))])
        lastp = f"{path}?cursor=64535"
        c.ok(lastp)
        warm_last = stats([c.ok(lastp) for _ in range(max(20, self.n_seq // 10))])
        rss_many = rss_kib(self.qmany.pid)
        c.close()
        self.report.add(5, "many.cold_vs_warm", f"65,535 bitmaps: /bitmaps first 1000 after touch, median of {n_cold}", cold["median_s"], fmt_time(cold["median_s"]), "cached",
                        warm_first["median_s"], fmt_time(warm_first["median_s"]),
                        note=f"very first request {fmt_time(first_ever)}",
                        extra={"cold": cold, "cached": warm_first, "first_request_s": first_ever})
        self.report.add(5, "many.last_vs_first", "65,535 bitmaps: /bitmaps last 1000 vs first 1000, cached",
                        warm_last["median_s"], fmt_time(warm_last["median_s"]), "first page",
                        warm_first["median_s"], fmt_time(warm_first["median_s"]))
        idle = self.idle_rss["qcowscoped-65535"]
        self.report.add(5, "many.rss", "65,535 bitmaps: daemon RSS after", rss_many, f"{rss_many / 1024:.1f} MiB",
                        "at start", idle, f"{idle / 1024:.1f} MiB")
        if self.quick:
            self.report.add(5, "many.qemu_img", "65,535 bitmaps: one qemu-img info --output=json", None,
                            "skipped (--quick)", "", None, "")
        else:
            log("   qemu-img info on the 65,535-bitmap image (about 2 minutes)")
            start = time.perf_counter()
            run(["qemu-img", "info", "--output=json", self.many_image], "qemu-img info bitmaps-65535",
                cpus=self.cpuset("client"), timeout=900)
            qt = time.perf_counter() - start
            self.report.add(5, "many.qemu_img", "65,535 bitmaps: /bitmaps first page after touch vs qemu-img info",
                            cold["median_s"], fmt_time(cold["median_s"]), "qemu-img info (one process)", qt,
                            fmt_time(qt))


    # -- 7. footprint: startup, RSS, CPU per request; the targets --------------------------

    def time_startup(self, name, make_argv, path, n):
        """Exec to the first 200 of GET path (a fresh process each time), median of n, in seconds."""
        times = []
        for i in range(n):
            port = free_port()
            argv = make_argv(port, i)
            t0 = time.perf_counter()
            p = Proc(f"{name}-start{i}", argv, None, self.logdir)
            try:
                while True:
                    if not p.alive():
                        raise Failure(f"{name} exited before answering:\n{p.tail()}")
                    if time.perf_counter() - t0 > 30:
                        raise Failure(f"{name} did not answer {path} within 30 s")
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                                break
                    except OSError:
                        pass
                    time.sleep(0.0005)
                times.append(time.perf_counter() - t0)
            finally:
                p.stop()
                _children.remove(p)
        return stats(times)

    def rss_tree_kib(self, pid):
        """RSS of a process plus its direct children (nginx workers)."""
        total = rss_kib(pid)
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != pid:
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                            total += rss_kib(int(entry))
                except (OSError, IndexError, ValueError, Failure):
                    pass
        return total

    def section7(self):
        n = 5 if self.quick else 20
        target_requests = 1_000_000
        log(f"7. footprint: startup to first 200 (median of {n}), RSS idle and after {target_requests:,} requests, "
            "CPU/request; the issue's targets")
        header = "/v1/images/bitmaps.qcow2/header"
        # Startup: exec to the first 200 of the cached-path route, a fresh process each time.
        q_start = self.time_startup("qcowscoped", lambda port, i: self.taskset("server") + [
            self.qcowscoped, "--images", self.main_dir, "--listen", f"127.0.0.1:{port}", "--threads",
            str(self.threads), "--log-level", "warning"], header, n)
        floor_start = self.time_startup("c-floor", lambda port, i: self.taskset("server") + [
            self.a.floor, os.path.join(self.work, "floor.manifest"), str(self.threads), str(port),
            str(CONNECTION_LIMIT), str(TIMEOUT_S)], header, n)

        def nginx_argv(port, i):
            d = os.path.join(self.work, f"nginx-start{i}")
            os.makedirs(d, exist_ok=True)
            conf = re.sub(r"listen 127\.0\.0\.1:\d+", f"listen 127.0.0.1:{port}", self.nginx_conf)
            conf = conf.replace(self.nginx_dir + "/", d + "/")
            cpath = os.path.join(d, "nginx.conf")
            with open(cpath, "w") as fh:
                fh.write(conf)
            return self.taskset("server") + ["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", cpath]
        nginx_start = self.time_startup("nginx", nginx_argv, header, n)
        st = lambda x: f"{fmt_time(x['median_s'])} (max {fmt_time(x['max_s'])})"
        self.report.add(7, "footprint.startup.vs_floor", f"startup: exec to first 200 of /header, median of {n}",
                        q_start["median_s"], st(q_start), "C floor", floor_start["median_s"], st(floor_start),
                        extra={"qcowscoped": q_start, "reference": floor_start})
        self.report.add(7, "footprint.startup.vs_nginx", f"startup: exec to first 200 of /header, median of {n}",
                        q_start["median_s"], st(q_start), "nginx", nginx_start["median_s"], st(nginx_start),
                        extra={"qcowscoped": q_start, "reference": nginx_start})
        # RSS: a fresh daemon idle, after a warm-up, and after >= 1,000,000 requests of cached /header.
        fp = self.start_qcowscoped("qcowscoped-footprint", self.main_dir)
        rss_idle = rss_kib(fp.pid)
        warm = self.wrk(fp, header, self.warmup + 1, "footprint-warmup")
        rss_warm = rss_kib(fp.pid)
        rate = max(warm["rps"], 1000.0)
        done, cpu_s, runs = 0, 0.0, []
        while done < target_requests:
            seconds = max(2, int((target_requests - done) / rate * 1.05) + 1)
            r = self.wrk(fp, header, seconds, "footprint-1m")
            done += r["requests"]
            cpu_s += r["server_cpu_s"]
            runs.append(r)
            rate = max(r["rps"], 1000.0)
        rss_after = rss_kib(fp.pid)
        cpu_us = cpu_s / done * 1e6
        growth = rss_after - rss_warm
        fp.stop()
        _children.remove(fp)
        del self.servers["qcowscoped-footprint"]
        floor_rss, nginx_rss = self.rss_tree_kib(self.floor.pid), self.rss_tree_kib(self.nginx.pid)
        mib = lambda k: f"{k / 1024:.1f} MiB"
        self.report.add(7, "footprint.rss.idle", "RSS: fresh daemon, idle", rss_idle, mib(rss_idle),
                        "C floor (after section 1)", floor_rss, mib(floor_rss), note=f"nginx master+workers {mib(nginx_rss)}")
        self.report.add(7, "footprint.rss.after", f"RSS after {done:,} requests of /header (steady)", rss_after,
                        mib(rss_after), "after warm-up", rss_warm, mib(rss_warm),
                        note=f"growth {growth:+,} KiB", extra={"requests": done, "growth_kib": growth})
        floor_cpu = self.wrk_results["header"]["C floor"]["server_cpu_us_per_request"]
        nginx_cpu = self.wrk_results["header"]["nginx"]["server_cpu_us_per_request"]
        self.report.add(7, "footprint.cpu.vs_floor", f"CPU per request /header over {done:,} requests (/proc/PID/stat)",
                        cpu_us, f"{cpu_us:.1f} µs", "C floor (section 1)", floor_cpu, f"{floor_cpu:.1f} µs")
        self.report.add(7, "footprint.cpu.vs_nginx", f"CPU per request /header over {done:,} requests (/proc/PID/stat)",
                        cpu_us, f"{cpu_us:.1f} µs", "nginx (section 1)", nginx_cpu, f"{nginx_cpu:.1f} µs")
        log(f"   startup {fmt_time(q_start['median_s'])} (floor {fmt_time(floor_start['median_s'])}, nginx "
            f"{fmt_time(nginx_start['median_s'])}); RSS idle {mib(rss_idle)}, warm {mib(rss_warm)}, after {done:,} "
            f"{mib(rss_after)}; CPU {cpu_us:.1f} µs/req")
        self.check_targets(q_start, rss_after, growth, done)

    def row(self, key):
        for r in self.report.rows:
            if r["id"] == key:
                return r
        return None

    def throughput_targets(self):
        """Issue 21: every section 1 ratio with the default configuration (access log on, metrics on)."""
        t = []

        def target(name, ok, figures):
            t.append({"target": name, "pass": bool(ok), "figures": figures})

        for key, label, floor_ratio in (("header", "cached /header", 0.8), ("healthz", "/healthz", 0.9),
                                        ("bitmaps", "cached /bitmaps", 0.6), ("table", "cached table page", 0.6),
                                        ("listing", "listing page", 0.6)):
            h = self.wrk_results[key]
            r = h["qcowscoped"]["rps"] / h["C floor"]["rps"]
            target(f"{label} >= {floor_ratio}x C floor req/s (default configuration)", r >= floor_ratio,
                   f"{h['qcowscoped']['rps']:,.0f}/s vs {h['C floor']['rps']:,.0f}/s = {r:.2f}x"
                   f"{' (C floor client-bound: wrk >= 90% busy)' if h['C floor']['wrk_cpu_utilization'] > 0.9 else ''}")
        q, f = self.wrk_256["qcowscoped"], self.wrk_256["C floor"]
        r = q["p99_us"] / f["p99_us"] if f["p99_us"] else 0
        target("p99 latency under 256 connections <= 2x the C floor's (cached /header)", r <= 2,
               f"{fmt_time(q['p99_us'] / 1e6)} vs {fmt_time(f['p99_us'] / 1e6)} = {r:.2f}x")
        return t

    def check_targets(self, q_start, rss_after, growth, done):
        """The issue's targets, one PASS/FAIL line each (printed after the table, kept in results.json)."""
        t = []

        def target(name, ok, figures):
            t.append({"target": name, "pass": bool(ok) if ok is not None else None, "figures": figures})

        t += self.throughput_targets()
        # Per answer: daemon-side latency of an already-running daemon (sequential keep-alive GETs from the
        # section 3 client: cached, and the first request after touch) vs one `qemu-img info` process
        # (hyperfine median, section 2).
        cold, curl = self.row("cold.summary"), self.row("process.curl")
        if cold and curl and curl["reference_value"]:
            qemu = curl["reference_value"]
            warm_x, cold_x = qemu / cold["reference_value"], qemu / cold["value"]
            target("/v1/images/{image} per answer >= 10x faster than qemu-img info (cached)", warm_x >= 10,
                   f"{fmt_time(cold['reference_value'])} vs {fmt_time(qemu)} = {warm_x:,.0f}x "
                   "(keep-alive GET on a running daemon, median; qemu-img info: hyperfine median)")
            target("/v1/images/{image} per answer >= 3x faster than qemu-img info (cold, after touch)", cold_x >= 3,
                   f"{fmt_time(cold['value'])} vs {fmt_time(qemu)} = {cold_x:,.0f}x")
        for key, label in (("table.last_vs_first16", "limit 16"), ("table.last_vs_first4096", "limit 4096")):
            x = self.row(key)
            if x:
                target(f"last/first table page <= 1.2 ({label})", x["ratio"] <= 1.2,
                       f"{fmt_time(x['value'])} / {fmt_time(x['reference_value'])} = {x['ratio']:.2f}")
        x = self.row("scale.listing_dir_size")
        if x:
            target("listing page at 10,000 images <= 2x the page at 10", x["ratio"] <= 2,
                   f"{fmt_time(x['value'])} / {fmt_time(x['reference_value'])} = {x['ratio']:.2f}x")
        target("RSS <= 32 MiB steady", rss_after <= 32 * 1024, f"{rss_after / 1024:.1f} MiB after {done:,} requests")
        target("RSS growth < 1 MiB over 1M requests", growth < 1024 and done >= 1_000_000,
               f"{growth:+,} KiB over {done:,} requests")
        target("startup <= 100 ms (exec to first 200)", q_start["median_s"] <= 0.100,
               f"{fmt_time(q_start['median_s'])} median")
        self.targets = t

    # -- output ---------------------------------------------------------------------------------


    # -- 6. dirty extents and totals of a 16 TiB disk vs nbdinfo over qemu-nbd ----------------------

    def make_sparse16t(self):
        """A 16 TiB qemu-img image (64 KiB clusters) with a 64 KiB-granularity bitmap 'b' (512 table
        entries of 32 GiB each; 32 MiB of bitmap when every entry is serialized). qemu-io dirties
        PER runs of 4-12 KiB in every 32 GiB entry (write -z: no guest data, one L2 table per entry),
        so every one of the 512 bitmap data clusters is written and must be read for the total."""
        per = 16 if self.quick else 64
        d = os.path.join(self.work, "sixteen")
        os.makedirs(d, exist_ok=True)
        image = os.path.join(d, "sparse-16t.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", image, "16T"], "qemu-img create 16T")
        run(["qemu-img", "bitmap", "--add", "-g", "65536", "-f", "qcow2", image, "b"], "qemu-img bitmap --add")
        cmds = []
        step = (512 << 20) // per  # all PER writes of an entry inside one 512 MiB L2 range
        for e in range(512):
            for k in range(per):
                cmds += ["-c", f"write -z {e * (32 << 30) + k * step + (k % 4) * 65536} {4096 * (1 + k % 3)}"]
        t = time.perf_counter()
        run(["qemu-io", "-f", "qcow2"] + cmds + [image], "qemu-io (dirty runs)", timeout=1800)
        log(f"   {512 * per} qemu-io writes in {time.perf_counter() - t:.1f} s; file {fmt_bytes(os.stat(image).st_size)}")
        return d, image, 512 * per

    def nbdinfo_totals(self, image, n):
        """qemu-nbd -r -t -B b (started once, SIGKILLed after), then n timed `nbdinfo --map --totals` runs.
        Returns (dirty bytes, stats of the nbdinfo wall times, qemu-nbd start-to-socket seconds)."""
        sock = os.path.join(self.work, "nbd.sock")
        t = time.perf_counter()
        p = Proc("qemu-nbd", ["qemu-nbd", "-r", "-t", "-k", sock, "-B", "b", "-f", "qcow2", image],
                 self.cpuset("server"), self.logdir)
        while not os.path.exists(sock):
            if not p.alive() or time.perf_counter() - t > 60:
                raise Failure(f"qemu-nbd did not start: {p.tail()}")
            time.sleep(0.005)
        started = time.perf_counter() - t
        uri = f"nbd+unix:///?socket={sock}"
        argv = self.taskset("client") + ["nbdinfo", "--json", "--totals", "--map=qemu:dirty-bitmap:b", uri]
        times, dirty = [], None
        try:
            for _ in range(n):
                t = time.perf_counter()
                r = run(argv, "nbdinfo --totals", timeout=600)
                times.append(time.perf_counter() - t)
                dirty = sum(x["size"] for x in json.loads(r.stdout) if x["type"] & 1)
        finally:
            p.p.kill()  # SIGKILL: qemu-nbd -t would otherwise wait for clients
            p.stop()
            _children.remove(p)
        return dirty, stats(times), started

    def section8(self):
        """Hostile-sized images: every image endpoint at its default page size, warm, against /healthz."""
        log("8. hostile images (65,535 bitmaps; 393,216 would-be findings): every endpoint at default page size, warm")
        c = Client(self.qmany.port)
        n = 10 if self.quick else 30
        health = stats([c.ok("/healthz") for _ in range(n)])
        slowest = ("", 0.0)
        for image, bitmap in (("bitmaps-65535.qcow2", "b00000"), ("findings.qcow2", None)):
            base = f"/v1/images/{image}"
            if bitmap is None:
                status, body, _ = c.get(base + "/bitmaps?limit=1")
                bitmap = "".join(f"%{b:02X}" for b in bytes.fromhex(json.loads(body)["bitmaps"][0]["name_hex"]))
            paths = [("summary", base), ("header", base + "/header"), ("extensions", base + "/extensions"),
                     ("bitmaps", base + "/bitmaps"), ("bitmap", f"{base}/bitmaps/{bitmap}"),
                     ("table", f"{base}/bitmaps/{bitmap}/table"), ("extents", f"{base}/bitmaps/{bitmap}/extents"),
                     ("snapshots", base + "/snapshots"), ("findings", base + "/findings"), ("locks", base + "/locks")]
            for key, path in paths:
                c.ok(path)  # the first (cold) answer; warm ones follow
                warm = stats([c.ok(path) for _ in range(n)])
                if warm["median_s"] > slowest[1]:
                    slowest = (f"{image} {key}", warm["median_s"])
                self.report.add(8, f"hostile.{image}.{key}", f"{image}: {key}, warm median of {n}",
                                warm["median_s"], f"{fmt_time(warm['median_s'])} (p90 {fmt_time(warm['p90_s'])})",
                                "/healthz", health["median_s"], fmt_time(health["median_s"]), extra={"warm": warm})
        c.close()
        self.targets.append({"target": "hostile images: every endpoint at default page size < 100 ms warm",
                             "pass": slowest[1] < 0.1, "figures": f"slowest {slowest[0]}: {fmt_time(slowest[1])}"})

    def make_map_images(self):
        """A 1 TiB disk of 64 KiB clusters with metadata preallocation (16M L2 entries), and the worst case
        for a map: the same with every other L2 entry cleared (8M data extents between 8M holes)."""
        d = os.path.join(self.work, "map")
        os.makedirs(d, exist_ok=True)
        big = os.path.join(d, "prealloc-1t.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", big, "1T"],
            "qemu-img create 1T preallocation=metadata", timeout=600)
        alt = os.path.join(d, "alternate-1t.qcow2")
        run(["cp", "--sparse=always", big, alt], "cp --sparse=always", timeout=600)
        with open(alt, "r+b") as f:
            h = f.read(72)
            l1_size, l1_off = struct.unpack(">IQ", h[36:48])
            f.seek(l1_off)
            l1 = struct.unpack(f">{l1_size}Q", f.read(8 * l1_size))
            for e in l1:
                l2 = e & 0x00FFFFFFFFFFFE00
                if not l2:
                    continue
                f.seek(l2)
                table = array.array("Q", f.read(65536))
                table[1::2] = array.array("Q", bytes(len(table) // 2 * 8))
                f.seek(l2)
                f.write(table.tobytes())
        return d, big, alt

    def section9(self):
        """The allocation map of 1 TiB disks, page by page over HTTP, against qemu-img map (issue 18)."""
        n = 3 if self.quick else 5
        log("9. allocation map of a 1 TiB disk (16M L2 entries): /map page by page at the default limit, "
            "/allocation, first page cold, vs qemu-img map --output=json")
        d, big, alt = self.make_map_images()
        srv = self.start_qcowscoped("qcowscoped-map", d)
        c = Client(srv.port)

        def touch(path):
            t = time.time_ns()
            os.utime(path, ns=(t, t))

        next_re = re.compile(rb'"next":(null|"([0-9]+-[0-9a-f]{16})")}\s*$')

        def walk(name):
            """Every page at the default limit; returns (extents, pages, allocated bytes). Pages are counted
            without a full JSON parse, so the client's cost stays small next to the server's."""
            count, pages, allocated, cursor = 0, 0, 0, None
            while True:
                path = f"/v1/images/{name}/map" + (f"?cursor={cursor}" if cursor else "")
                status, body, _ = c.get(path)
                if status != 200:
                    raise Failure(f"GET {path}: {status} {body[:200]!r}")
                m = next_re.search(body)
                if not m:
                    raise Failure(f"GET {path}: no next in {body[-200:]!r}")
                pages += 1
                count += body.count(b'{"start":')
                allocated += sum(int(x) for x in re.findall(rb'"length":([0-9]+),"depth":[0-9]+,"present":true,"zero":(?:true|false),"data":true', body))
                cursor = m.group(2).decode() if m.group(2) else None
                if not cursor:
                    return count, pages, allocated

        def qemu_map(path, runs):
            """Times `qemu-img map --output=json` (stdout to a file), then counts its entries streaming."""
            times = []
            out = os.path.join(self.work, "map", "qemu-map.json")
            for _ in range(runs):
                with open(out, "wb") as fh:
                    t = time.perf_counter()
                    r = subprocess.run(self.taskset("client") + ["qemu-img", "map", "--output=json", "-f", "qcow2", path],
                                       stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.PIPE, timeout=3600)
                    times.append(time.perf_counter() - t)
                if r.returncode != 0:
                    raise Failure(f"qemu-img map {path}: exit {r.returncode}: {r.stderr[-300:]!r}")
            entries, allocated = 0, 0
            with open(out, "rb") as fh:
                for line in fh:
                    line = line.strip().lstrip(b"[").rstrip(b",").rstrip(b"]")
                    if not line:
                        continue
                    e = json.loads(line)
                    entries += 1
                    if e["present"] and e["data"]:
                        allocated += e["length"]
            os.remove(out)
            return stats(times), entries, allocated

        def qemu_sum(path, runs):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                run(["bash", "-c", "qemu-img map --output=json -f qcow2 \"$1\" | jq '[.[] | select(.present and .data) | .length] | add'",
                     "sum", path], "qemu-img map | jq", timeout=1800)
                times.append(time.perf_counter() - t)
            return stats(times)

        results = {}
        for label, path, runs in (("prealloc", big, n), ("alternate", alt, 1)):
            name = os.path.basename(path)
            theirs, entries, q_alloc = qemu_map(path, runs)
            walks, count, pages, allocated = [], 0, 0, 0
            for _ in range(runs):
                touch(path)  # no cached bodies: every page is walked again (the file stays in the page cache)
                t = time.perf_counter()
                count, pages, allocated = walk(name)
                walks.append(time.perf_counter() - t)
            walks = stats(walks)
            agree = count == entries and allocated == q_alloc
            note = (f"{count:,} extents in {pages} pages = qemu-img's {entries:,}" if agree else
                    f"DISAGREE: {count} extents / {allocated} bytes vs qemu-img {entries} / {q_alloc}")
            ratio = theirs["median_s"] / walks["median_s"] if walks["median_s"] else 0
            self.report.add(9, f"map.walk.{label}", f"1 TiB {label}: whole /map, page by page (default limit), median of {runs}",
                            walks["median_s"], fmt_time(walks["median_s"]), "qemu-img map --output=json",
                            theirs["median_s"], fmt_time(theirs["median_s"]), note=note)
            results[label] = (ratio, agree)
            cold = []
            for _ in range(n * 4):
                touch(path)
                cold.append(c.ok(f"/v1/images/{name}/map"))
            cold = stats(cold)
            self.report.add(9, f"map.first_page.cold.{label}", f"1 TiB {label}: first /map page after touch, median of {n * 4}",
                            cold["median_s"], f"{fmt_time(cold['median_s'])} (p90 {fmt_time(cold['p90_s'])})",
                            "qemu-img map --output=json", theirs["median_s"], fmt_time(theirs["median_s"]))
            results[label + ".cold"] = cold["p90_s"]
        # Allocation totals of the 1 TiB disk, computed after a touch, against qemu-img map piped to a sum.
        name = os.path.basename(big)
        totals = []
        for _ in range(n):
            touch(big)
            status, body, elapsed = c.get(f"/v1/images/{name}/allocation")
            if status != 200 or not json.loads(body)["known"]:
                raise Failure(f"/allocation: {status} {body[:200]!r}")
            totals.append(elapsed)
        totals = stats(totals)
        summed = qemu_sum(big, n)
        alloc_ratio = summed["median_s"] / totals["median_s"] if totals["median_s"] else 0
        self.report.add(9, "allocation.prealloc", f"1 TiB prealloc: /allocation after touch, median of {n}",
                        totals["median_s"], fmt_time(totals["median_s"]), "qemu-img map | jq sum",
                        summed["median_s"], fmt_time(summed["median_s"]))
        c.close()
        peak = 0
        with open(f"/proc/{srv.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
        self.report.add(9, "map.rss_peak", "qcowscoped peak RSS after the map walks and totals (VmHWM)",
                        peak * 1024, f"{peak / 1024:.1f} MiB", note="target <= 32 MiB")
        self.targets.append({"target": "1 TiB metadata-preallocated map, page by page, >= 10x faster than qemu-img map",
                             "pass": results["prealloc"][0] >= 10 and results["prealloc"][1],
                             "figures": f"{results['prealloc'][0]:.1f}x"})
        self.targets.append({"target": "1 TiB every other cluster (8M extents), page by page, faster than qemu-img map",
                             "pass": results["alternate"][0] >= 1 and results["alternate"][1],
                             "figures": f"{results['alternate'][0]:.1f}x"})
        self.targets.append({"target": "first map page under 5 ms cold (p90)",
                             "pass": max(results["prealloc.cold"], results["alternate.cold"]) < 0.005,
                             "figures": f"p90 {fmt_time(results['prealloc.cold'])} / {fmt_time(results['alternate.cold'])}"})
        self.targets.append({"target": "allocation totals of the 1 TiB disk >= 5x faster than qemu-img map | sum",
                             "pass": alloc_ratio >= 5, "figures": f"{alloc_ratio:.1f}x"})
        self.targets.append({"target": "qcowscoped RSS within 32 MiB through the map section",
                             "pass": peak <= 32 * 1024, "figures": f"{peak / 1024:.1f} MiB"})

    def section10(self):
        """The read-only check (issue 19): a 1 TiB metadata-preallocated disk against qemu-img check, and
        what the scrubber costs cached /header throughput while it checks 1,000 images."""
        n = 3 if self.quick else 5
        log("10. check: 1 TiB metadata-preallocated disk, qcowscope check vs qemu-img check -U; "
            "cached /header with the scrubber checking 1,000 images vs --scrub off")
        d = os.path.join(self.work, "map")
        big = os.path.join(d, "prealloc-1t.qcow2")
        if not os.path.exists(big):
            os.makedirs(d, exist_ok=True)
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", big, "1T"],
                "qemu-img create 1T preallocation=metadata", timeout=600)

        def timed(argv, ok_codes=(0,)):
            """Wall time of one run, and its stdout."""
            t = time.perf_counter()
            p = subprocess.Popen(self.taskset("server") + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            out, err = p.communicate(timeout=3600)
            elapsed = time.perf_counter() - t
            if p.returncode not in ok_codes:
                raise Failure(f"{argv[0]}: exit {p.returncode}: {err[-300:]!r}")
            return elapsed, out

        def peak_rss(argv):
            """Peak RSS (KiB) of one run (wait4's ru_maxrss)."""
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_maxrss

        ours_argv = [self.qcowscope, "check", big, "--format", "json"]
        theirs_argv = ["qemu-img", "check", "-U", "--output=json", "-f", "qcow2", big]
        timed(ours_argv)
        timed(theirs_argv)  # both warm in the page cache
        ours, theirs = [], []
        for _ in range(n):
            e, out_ours = timed(ours_argv)
            ours.append(e)
            e, out_theirs = timed(theirs_argv)
            theirs.append(e)
        ours, theirs = stats(ours), stats(theirs)
        a, b = json.loads(out_ours), json.loads(out_theirs)
        keys = [("check-errors", "check_errors"), ("corruptions", "corruptions"), ("leaks", "leaks"),
                ("image-end-offset", "image_end_offset"), ("total-clusters", "total_clusters"),
                ("allocated-clusters", "allocated_clusters"), ("fragmented-clusters", "fragmented_clusters"),
                ("compressed-clusters", "compressed_clusters")]
        agree = all(b.get(q, 0) == a.get(o, 0) for q, o in keys)
        ratio = theirs["median_s"] / ours["median_s"] if ours["median_s"] else 0
        rss = peak_rss(ours_argv)
        rss_qemu = peak_rss(theirs_argv)
        self.report.add(10, "check.prealloc_1t", f"1 TiB prealloc: qcowscope check, median of {n}",
                        ours["median_s"], fmt_time(ours["median_s"]), "qemu-img check -U --output=json",
                        theirs["median_s"], fmt_time(theirs["median_s"]),
                        note=("figures equal qemu-img's" if agree else f"DISAGREE: {a} vs {b}"))
        self.report.add(10, "check.rss", "qcowscope check peak RSS (1 TiB prealloc)", rss * 1024, f"{rss / 1024:.1f} MiB",
                        "qemu-img check", rss_qemu * 1024, f"{rss_qemu / 1024:.1f} MiB", note="target < 64 MiB")
        # The same check through the daemon: asked after a touch, 202 until done.
        srv = self.start_qcowscoped("qcowscoped-check", d, extra=("--scrub", "off"))
        c = Client(srv.port)
        name = os.path.basename(big)
        served = []
        for _ in range(n):
            t_ns = time.time_ns()
            os.utime(big, ns=(t_ns, t_ns))
            t = time.perf_counter()
            while True:
                status, body, _ = c.get(f"/v1/images/{name}/check")
                if status == 200:
                    break
                if status != 202:
                    raise Failure(f"/check: {status} {body[:200]!r}")
                time.sleep(0.05)
            served.append(time.perf_counter() - t)
        served = stats(served)
        c.close()
        self.report.add(10, "check.http", f"1 TiB prealloc: GET /check after touch until 200, median of {n}",
                        served["median_s"], fmt_time(served["median_s"]), "qemu-img check -U",
                        theirs["median_s"], fmt_time(theirs["median_s"]))
        self.targets.append({"target": "check of a 1 TiB metadata-preallocated disk >= 2x faster than qemu-img check",
                             "pass": ratio >= 2 and agree, "figures": f"{ratio:.2f}x ({fmt_time(ours['median_s'])} vs {fmt_time(theirs['median_s'])})"})
        self.targets.append({"target": "qcowscope check peak RSS under 64 MiB (1 TiB disk)",
                             "pass": rss < 64 * 1024, "figures": f"{rss / 1024:.1f} MiB"})

        # 1,000 images whose metadata takes the scrubber (32 MiB/s, the default) longer than the wrk runs.
        many = os.path.join(self.work, "scrub")
        os.makedirs(many, exist_ok=True)
        size = "1G" if self.quick else "4G"
        first = os.path.join(many, "img-0000.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", first, size],
            "qemu-img create preallocation=metadata", timeout=600)
        for i in range(1, 1000):
            run(["cp", "--sparse=always", first, os.path.join(many, f"img-{i:04d}.qcow2")], "cp", timeout=60)
        path = "/v1/images/img-0500.qcow2/header"
        off = self.start_qcowscoped("qcowscoped-scrub-off", many, extra=("--scrub", "off"))
        Client(off.port).ok(path)
        base = self.load(off, path, "header-scrub-off")
        off.stop()
        on = self.start_qcowscoped("qcowscoped-scrub-on", many)
        mc = Client(on.port)
        mc.ok(path)

        def scrub_checks():
            _, body, _ = mc.get("/metrics")
            m = re.search(rb"^qcowscope_scrub_checks_total ([0-9]+)", body, re.M)
            return int(m.group(1)) if m else 0
        before = scrub_checks()
        busy = self.load(on, path, "header-scrub-on")
        during = scrub_checks() - before
        mc.close()
        keep = busy["rps"] / base["rps"] if base["rps"] else 0
        self.report.add(10, "rps.header.scrub", "req/s cached /header while the scrubber checks 1,000 images",
                        busy["rps"], fmt_wrk(busy), "--scrub off", base["rps"], fmt_wrk(base),
                        note=f"{during} checks finished during the runs; " + "; ".join(
                            x for x in (wrk_note(busy, base), socket_errors(busy, base)) if x))
        self.targets.append({"target": "cached /header with the scrubber running over 1,000 images within 10% of --scrub off",
                             "pass": keep >= 0.9 and during > 0, "figures": f"{keep:.2f}x, {during} checks during the run"})

    def section11(self):
        """Incremental-backup readiness (issue 20): a 4-layer chain of 1 TiB disks with 64 KiB bitmaps, the
        verdict and the backup's size from the files, against what QEMU needs for the same answer: a merge
        of the layers' bitmaps into one (qemu-img bitmap --add + --merge per layer on a scratch copy), an
        export (qemu-nbd -r -B) and nbdinfo --map for the dirty bitmap, --totals and base:allocation."""
        n = 3 if self.quick else 5
        log("11. checkpoints: 4-layer chain of 1 TiB disks, 64 KiB bitmaps; qcowscope checkpoints vs "
            "qemu-img bitmap --merge + qemu-nbd -B + nbdinfo")
        d = os.path.join(self.work, "checkpoints")
        os.makedirs(d, exist_ok=True)
        names = ["l3.qcow2", "l2.qcow2", "l1.qcow2", "top.qcow2"]
        rng = random.Random(20)
        tib = 1 << 40
        if not os.path.exists(os.path.join(d, "top.qcow2")):
            below = None
            for i, name in enumerate(names):
                path = os.path.join(d, name)
                argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536"]
                if below:
                    argv += ["-b", below, "-F", "qcow2"]
                run(argv + [path, "1T"], "qemu-img create 1T", timeout=120)
                run(["qemu-img", "bitmap", "--add", "-g", "65536", path, "c1"], "qemu-img bitmap --add", timeout=60)
                # 1,000 scattered 64 KiB writes, a 32 MiB run and a 16 MiB run of zeroes per layer.
                cmds = []
                for _ in range(1000):
                    cmds += ["-c", f"write {rng.randrange(tib >> 16) << 16} 64k"]
                cmds += ["-c", f"write {(i * 100 + 7) << 30} 32M", "-c", f"write -z {(i * 100 + 50) << 30} 16M"]
                run(["qemu-io", "-f", "qcow2"] + cmds + [path], "qemu-io writes", timeout=600)
                if name != "top.qcow2":
                    run(["qemu-img", "bitmap", "--disable", path, "c1"], "qemu-img bitmap --disable", timeout=60)
                below = name

        def timed(argv):
            t = time.perf_counter()
            p = subprocess.run(self.taskset("server") + argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=3600)
            if p.returncode not in (0, 1):
                raise Failure(f"{argv[0]}: exit {p.returncode}: {p.stderr[-300:]!r}")
            return time.perf_counter() - t, p.stdout

        top = os.path.join(d, "top.qcow2")
        ours_argv = [self.qcowscope, "checkpoints", top, "c1", "--format", "json"]
        timed(ours_argv)  # the page cache warm for both tools
        ours = []
        doc = {}
        for _ in range(n):
            e, out = timed(ours_argv)
            ours.append(e)
            doc = json.loads(out)
        ours = stats(ours)

        scratch = os.path.join(d, "scratch")
        os.makedirs(scratch, exist_ok=True)
        for name in names:
            run(["cp", "--sparse=always", os.path.join(d, name), os.path.join(scratch, name)], "cp", timeout=600)
        stop = os.path.join(scratch, "top.qcow2")
        sock = os.path.join(scratch, "nbd.sock")
        uri = f"nbd+unix:///?socket={sock}"

        def theirs_once():
            t = time.perf_counter()
            subprocess.run(self.taskset("server") + ["qemu-img", "bitmap", "--add", "-g", "65536", stop, "u"], check=True,
                           capture_output=True, timeout=600)
            for depth, name in enumerate(reversed(names)):
                argv = ["qemu-img", "bitmap", "--merge", "c1"]
                if depth:
                    argv += ["-b", os.path.join(scratch, name), "-F", "qcow2"]
                subprocess.run(self.taskset("server") + argv + [stop, "u"], check=True, capture_output=True, timeout=600)
            nbd = subprocess.Popen(self.taskset("server") + ["qemu-nbd", "-r", "-t", "-k", sock, "-B", "u", "-f", "qcow2", stop],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while not os.path.exists(sock):
                    if nbd.poll() is not None:
                        raise Failure("qemu-nbd exited")
                    time.sleep(0.002)
                totals = subprocess.run(self.taskset("client") + ["nbdinfo", "--json", "--totals", "--map=qemu:dirty-bitmap:u", uri],
                                        check=True, capture_output=True, timeout=600).stdout
                subprocess.run(self.taskset("client") + ["nbdinfo", "--json", "--map=qemu:dirty-bitmap:u", uri],
                               check=True, capture_output=True, timeout=600)
                subprocess.run(self.taskset("client") + ["nbdinfo", "--json", "--map", uri], check=True, capture_output=True,
                               timeout=600)
            finally:
                nbd.kill()
                nbd.wait()
                try:
                    os.unlink(sock)
                except FileNotFoundError:
                    pass
            elapsed = time.perf_counter() - t
            subprocess.run(["qemu-img", "bitmap", "--remove", stop, "u"], check=True, capture_output=True, timeout=600)
            dirty = sum(r["size"] for r in json.loads(totals) if r["type"] & 1)
            return elapsed, dirty

        theirs_once()
        theirs, qemu_dirty = [], None
        for _ in range(n):
            e, qemu_dirty = theirs_once()
            theirs.append(e)
        theirs = stats(theirs)
        agree = doc.get("dirty_bytes") == qemu_dirty and doc.get("incremental_ready") is True
        ratio = theirs["median_s"] / ours["median_s"] if ours["median_s"] else 0
        self.report.add(11, "checkpoints.chain_4x1t", f"4 x 1 TiB chain: qcowscope checkpoints top c1, median of {n}",
                        ours["median_s"], fmt_time(ours["median_s"]), "qemu-img merge + qemu-nbd -B + nbdinfo",
                        theirs["median_s"], fmt_time(theirs["median_s"]),
                        note=(f"dirty {doc.get('dirty_bytes')} B, backup {doc.get('backup_bytes')} B, zero "
                              f"{doc.get('zero_bytes')} B; dirty equals nbdinfo --totals" if agree
                              else f"DISAGREE: ours {doc.get('dirty_bytes')} ready {doc.get('incremental_ready')}, "
                                   f"nbdinfo {qemu_dirty}"))
        # The daemon, asked after a touch of the top (a new chain version: nothing cached).
        srv = self.start_qcowscoped("qcowscoped-checkpoints", d, extra=("--scrub", "off"))
        c = Client(srv.port)
        served = []
        for _ in range(n):
            t_ns = time.time_ns()
            os.utime(top, ns=(t_ns, t_ns))
            status, body, e = c.get("/v1/images/top.qcow2/checkpoints/c1")
            if status != 200:
                raise Failure(f"/checkpoints/c1: {status} {body[:200]!r}")
            served.append(e)
        served = stats(served)
        status, body, listing = c.get("/v1/images/top.qcow2/checkpoints")
        c.close()
        srv.stop()
        self.report.add(11, "checkpoints.http", f"GET /checkpoints/c1 after a touch (cold document), median of {n}",
                        served["median_s"], fmt_time(served["median_s"]), "qemu-img merge + qemu-nbd -B + nbdinfo",
                        theirs["median_s"], fmt_time(theirs["median_s"]),
                        note=f"the listing (/checkpoints) then took {fmt_time(listing)}")
        self.targets.append({"target": "readiness and sizes of a 4 x 1 TiB chain (64 KiB bitmaps) under 200 ms cold",
                             "pass": agree and ours["median_s"] < 0.2 and served["median_s"] < 0.2,
                             "figures": f"CLI {fmt_time(ours['median_s'])}, HTTP {fmt_time(served['median_s'])}"})
        self.targets.append({"target": "at least 10x faster than qemu-img merge + qemu-nbd + nbdinfo on the same chain",
                             "pass": agree and ratio >= 10, "figures": f"{ratio:.1f}x"})

    def section12(self):
        """The fleet scrape (issue 23): GET /metrics of a daemon over 1,000 images (two bitmaps each, the
        default configuration: scrubber on, every image with its own series), against /healthz on the same
        daemon and connection (what any answer costs)."""
        n = 30 if self.quick else 100
        log(f"12. /metrics over 1,000 images: {n} sequential scrapes after warm-up, vs /healthz")
        d = os.path.join(self.work, "metrics-1000")
        os.makedirs(d, exist_ok=True)
        first = os.path.join(d, "vm-0000.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", first, "20G"], "qemu-img create", timeout=60)
        for b in ("daily", "hourly"):
            run(["qemu-img", "bitmap", "--add", first, b], "qemu-img bitmap --add", timeout=60)
        run(["qemu-io", "-f", "qcow2", "-c", "write 0 1M", "-c", "write 1G 64k", first], "qemu-io write", timeout=60)
        for i in range(1, 1000):
            run(["cp", "--sparse=always", first, os.path.join(d, f"vm-{i:04d}.qcow2")], "cp", timeout=60)
        srv = self.start_qcowscoped("qcowscoped-metrics", d)
        c = Client(srv.port)
        # Warm: every image parsed (the listing has no pending entry) and one scrape made.
        deadline = time.monotonic() + 300
        while True:
            status, body, _ = c.get("/v1/images?limit=1000")
            if status == 200 and b'"pending"' not in body.replace(b'"state":"pending"', b""):
                break
            if time.monotonic() > deadline:
                raise Failure("/v1/images still has pending images after 300 s")
            time.sleep(0.2)
        for _ in range(3):
            status, body, _ = c.get("/metrics")
            if status != 200:
                raise Failure(f"/metrics: {status}")
        series = len(re.findall(rb'^qcowscope_image_virtual_size_bytes\{', body, re.M))
        if series != 1000:
            raise Failure(f"/metrics has {series} images' virtual-size series, not 1000")
        nseries = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
        scrape, health = [], []
        for _ in range(n):
            status, body, t = c.get("/metrics")
            scrape.append(t)
            _, _, t = c.get("/healthz")
            health.append(t)
        c.close()
        srv.stop()
        scrape_s, health_s = stats(scrape), stats(health)
        p99 = sorted(scrape)[max(0, int(len(scrape) * 0.99) - 1)]
        self.report.add(12, "metrics.1000", f"GET /metrics, 1,000 images (2 bitmaps each, {len(body)} bytes), median of {n}",
                        scrape_s["median_s"], fmt_time(scrape_s["median_s"]), "GET /healthz, same daemon",
                        health_s["median_s"], fmt_time(health_s["median_s"]),
                        note=f"p99 {fmt_time(p99)}, max {fmt_time(max(scrape))}; {nseries} series; target < 50 ms")
        self.targets.append({"target": "/metrics for 1,000 images answers in under 50 ms (median of sequential scrapes)",
                             "pass": scrape_s["median_s"] < 0.050, "figures": f"median {fmt_time(scrape_s['median_s'])}"})
        self.targets.append({"target": "/metrics for 1,000 images answers in under 50 ms (p99 of sequential scrapes)",
                             "pass": p99 < 0.050, "figures": f"p99 {fmt_time(p99)}, max {fmt_time(max(scrape))}"})

    def section6(self):
        n = 20 if self.quick else 100
        n_ref = 5 if self.quick else 20
        log(f"6. dirty extents/totals of a 16 TiB disk, 64 KiB granularity (32 MiB bitmap) vs nbdinfo over qemu-nbd")
        d, image, writes = self.make_sparse16t()
        srv = self.start_qcowscoped("qcowscoped-16t", d)
        c = Client(srv.port)
        base = "/v1/images/sparse-16t.qcow2/bitmaps/b"
        first = base + "/extents"

        def touch():
            t = time.time_ns()
            os.utime(image, ns=(t, t))

        def walk():
            """Every extent, pages of 10,000; returns (dirty bytes, extents, pages)."""
            total, count, pages, cursor = 0, 0, 0, None
            while True:
                path = first + "?limit=10000" + (f"&cursor={cursor}" if cursor else "")
                status, body, _ = c.get(path)
                if status != 200:
                    raise Failure(f"GET {path}: {status} {body[:200]!r}")
                doc = json.loads(body)
                pages += 1
                count += len(doc["extents"])
                total += sum(e["length"] for e in doc["extents"] if e["dirty"])
                cursor = doc["next"]
                if not cursor:
                    return total, count, pages

        # First page (1,000 extents): cached and cold (after touch: the file is parsed again).
        c.ok(first)
        warm = stats([c.ok(first) for _ in range(n)])
        cold = []
        for _ in range(n):
            touch()
            cold.append(c.ok(first))
        cold = stats(cold)
        # The exact total: the bitmap's dirty_bytes right after a touch (counted on that request), cached.
        def dirty_of(path):
            status, body, elapsed = c.get(path)
            if status != 200:
                raise Failure(f"GET {path}: {status}")
            return json.loads(body)["dirty_bytes"], elapsed
        total_cold, ours = [], None
        for _ in range(n):
            touch()
            ours, e = dirty_of(base)
            total_cold.append(e)
        total_cold = stats(total_cold)
        total_warm = stats([dirty_of(base)[1] for _ in range(n)])
        # The total by walking every extent page.
        walks = []
        for _ in range(max(3, n // 4)):
            t = time.perf_counter()
            walked, count, pages = walk()
            walks.append(time.perf_counter() - t)
        walks = stats(walks)
        c.close()
        theirs, ref, nbd_start = self.nbdinfo_totals(image, n_ref)
        agree = ours == theirs == walked
        note = (f"dirty bytes {ours:,} = nbdinfo's" if agree else
                f"DISAGREE: summary {ours}, extents walk {walked}, nbdinfo {theirs}")
        if not agree:
            log(f"   {note}")
        reftext = f"{fmt_time(ref['median_s'])} (median of {ref['n']})"
        refname = "nbdinfo --map --totals over qemu-nbd -B"
        extra = {"writes": writes, "extents": count, "nbdinfo": ref, "qemu_nbd_start_s": nbd_start,
                 "dirty_bytes": ours, "nbdinfo_dirty_bytes": theirs, "walk_dirty_bytes": walked}
        def within(x, limit):
            return f"goal < {fmt_time(limit)}: {'met' if x < limit else 'MISSED'}"
        self.report.add(6, "extents.first_page.cold", f"16 TiB: first extents page (1,000) after touch, median of {n}",
                        cold["median_s"], f"{fmt_time(cold['median_s'])} (p90 {fmt_time(cold['p90_s'])})",
                        refname, ref["median_s"], reftext, note=within(cold["median_s"], 0.010), extra=extra)
        self.report.add(6, "extents.first_page.cached", f"16 TiB: first extents page, cached, median of {n}",
                        warm["median_s"], f"{fmt_time(warm['median_s'])} (p90 {fmt_time(warm['p90_s'])})",
                        refname, ref["median_s"], reftext, note=within(warm["median_s"], 0.010))
        self.report.add(6, "extents.total.cold", f"16 TiB: exact dirty_bytes (GET bitmap) after touch, median of {n}",
                        total_cold["median_s"], f"{fmt_time(total_cold['median_s'])} (p90 {fmt_time(total_cold['p90_s'])})",
                        refname, ref["median_s"], reftext,
                        note=within(total_cold["median_s"], 0.200) + "; " + note)
        self.report.add(6, "extents.total.cached", f"16 TiB: dirty_bytes (GET bitmap), cached, median of {n}",
                        total_warm["median_s"], fmt_time(total_warm["median_s"]), refname, ref["median_s"], reftext)
        self.report.add(6, "extents.total.walk", f"16 TiB: total by walking all {count:,} extents ({pages} pages), "
                        f"median of {walks['n']}", walks["median_s"], fmt_time(walks["median_s"]),
                        refname, ref["median_s"], reftext)
        log(f"   first page cold {fmt_time(cold['median_s'])}, total cold {fmt_time(total_cold['median_s'])}, "
            f"walk {fmt_time(walks['median_s'])}; nbdinfo {fmt_time(ref['median_s'])} "
            f"(qemu-nbd start {fmt_time(nbd_start)}); {note}")
        srv.stop()
        _children.remove(srv)
        del self.servers["qcowscoped-16t"]

    def meta(self):
        def version(argv):
            try:
                r = subprocess.run(argv, capture_output=True, timeout=10)
                return (r.stdout or r.stderr).decode(errors="replace").splitlines()[0].strip()
            except Exception:
                return None
        try:
            commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                    timeout=10).stdout.decode().strip()
            dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], capture_output=True,
                                   timeout=10).stdout.strip() != b""
        except Exception:
            commit, dirty = None, None
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": self.quick, "commit": commit, "uncommitted_changes": dirty,
            "cores": os.cpu_count(), "server_cpus": self.server_cpus, "client_cpus": self.client_cpus,
            "pinning": self.pinning, "server_threads": self.threads, "wrk_threads": self.wrk_threads,
            "wrk_connections": 64, "wrk_duration_s": self.duration, "wrk_warmup_s": self.warmup,
            "loadavg_start": self.load_start, "loadavg_end": os.getloadavg(),
            "tools": {"wrk": version(["wrk", "-v"]), "hyperfine": version(["hyperfine", "--version"]),
                      "nginx": version(["nginx", "-v"]), "qemu-img": version(["qemu-img", "--version"]),
                      "curl": version(["curl", "--version"]),
                      "nbdinfo": version(["nbdinfo", "--version"]), "kernel": os.uname().release},
        }

    def run(self):
        self.load_start = os.getloadavg()
        t0 = time.monotonic()
        if self.a.only == "map":
            self.section9()
        elif self.a.only == "throughput":
            self.make_images()
            self.start_servers()
            self.start_floors()
            self.section1()
            self.targets += self.throughput_targets()
        elif self.a.only not in ("extents", "check", "checkpoints", "metrics"):
            self.make_images()
            self.start_servers()
            self.start_floors()
            self.section1()
            self.section2()
            self.section3()
            self.section4()
            self.section5()
            self.section7()
            self.section8()
            self.section9()
            self.section10()
            self.section11()
            self.section12()
        if self.a.only == "metrics":
            self.section12()
        if self.a.only == "check":
            self.section10()
        if self.a.only == "checkpoints":
            self.section11()
        if self.a.only not in ("map", "check", "checkpoints", "metrics", "throughput"):
            self.section6()
        meta = self.meta()
        meta["elapsed_s"] = round(time.monotonic() - t0, 1)
        results = {"meta": meta, "results": self.report.rows, "targets": self.targets}
        path = os.path.join(self.a.out, "results.json")
        with open(path + ".tmp", "w") as fh:
            json.dump(results, fh, indent=2)
        os.replace(path + ".tmp", path)
        la = lambda x: " ".join(f"{v:.2f}" for v in x)
        print()
        print(f"qcowscope benchmark{' (--quick)' if self.quick else ''}: {meta['date']}, commit {meta['commit']}"
              f"{' + uncommitted changes' if meta['uncommitted_changes'] else ''}, {meta['elapsed_s']:.0f} s")
        print(f"{meta['cores']} cores; {self.pinning}; server threads {self.threads} "
              f"(qcowscoped --threads, C floor pool, nginx workers); wrk -t{self.wrk_threads} -c64 "
              f"-d{self.duration}s after {self.warmup}s warm-up")
        print(f"load average at start {la(self.load_start)}, at end {la(meta['loadavg_end'])}: compare ratios, "
              f"not absolute numbers, and only within one run")
        print("ratio = qcowscoped column / reference column (req/s: higher is better; times, bytes, RSS: lower is better)")
        print()
        print(self.report.table())
        print()
        if self.targets:
            print("targets (section 7):")
            for x in self.targets:
                print(f"  {'PASS' if x['pass'] else 'FAIL'}  {x['target']}: {x['figures']}")
            print()
        print(f"results: {path}; raw tool output: {self.raw}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin-dir", required=True, help="directory with release qcowscoped and qcowscope")
    ap.add_argument("--floor", required=True, help="the compiled C floor (floor.c)")
    ap.add_argument("--out", required=True, help="output directory (results.json, raw/)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s wrk runs, fewer samples")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 10, --quick 3)")
    ap.add_argument("--threads", type=int, help="server threads (default: the number of server cores)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--only", choices=["throughput", "extents", "map", "check", "checkpoints", "metrics"],
                    help="run only section 1 (throughput vs the C floor and nginx), 6 (16 TiB dirty extents vs nbdinfo), 9 (1 TiB allocation map vs qemu-img map), "
                         "10 (check vs qemu-img check, the scrubber's cost) or 11 (checkpoints of a 4 x 1 TiB chain vs "
                         "qemu-img bitmap --merge + qemu-nbd + nbdinfo) or 12 (/metrics over 1,000 images)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.out = os.path.abspath(args.out)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    bench = None
    code = 0
    try:
        bench = Bench(args)
        bench.run()
    except Failure as e:
        log(f"bench: FAILED: {e}")
        code = 1
    except KeyboardInterrupt:
        log("bench: interrupted")
        code = 130
    finally:
        stop_all()
        if bench and not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
        elif bench:
            log(f"bench: work directory kept: {bench.work}")
    return code


if __name__ == "__main__":
    sys.exit(main())
