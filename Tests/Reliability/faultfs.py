#!/usr/bin/python3
"""faultfs: a read-only passthrough FUSE filesystem that injects storage faults.

    /usr/bin/python3 faultfs.py SOURCE_DIR MOUNTPOINT [--control PATH]

Mounts SOURCE_DIR read-only at MOUNTPOINT (foreground, multithreaded, direct_io,
attr/entry timeouts 0), prints `faultfs: mounted SOURCE at MOUNTPOINT` once it serves,
and unmounts on SIGTERM/SIGINT/SIGHUP. If it cannot mount it prints one line
`faultfs: cannot mount ...: REASON` to stderr and exits 2. Needs python3-fusepy
(Debian's module is `fusepy`; upstream's is `fuse`) and libfuse2; run it with
/usr/bin/python3.

Faults come from a JSON control file (default SOURCE_DIR/../faultfs-control.json).
It is re-read whenever its mtime/size/inode change (checked on every operation), so
change faults at run time by writing a temporary file and renaming it over the old:

    {"rules": [
      {"file": "slow.qcow2", "op": "read", "from": 65536, "to": null,
       "fault": "stall", "seconds": 40},
      {"file": "bad.qcow2", "from": 1048576, "fault": "eio"},
      {"file": "bad.qcow2", "op": "open", "fault": "eio", "errno": "ENXIO"},
      {"file": "cut.qcow2", "fault": "short", "bytes": 512},
      {"file": "gone.qcow2", "fault": "shrink", "size": 4096}
    ]}

  file     path relative to the mount root, exact match ("" or "." is the root).
  op       read (default), open, getattr, readdir (readdir: `file` is the directory).
  from,to  reads only: the rule matches a FUSE read that overlaps [from, to);
           from defaults to 0, to null means end of file.
  fault    stall   sleep `seconds` (absent/null: until removed), then carry on. The
                   sleep ends early when the rule leaves the control file or the
                   filesystem unmounts. With "interruptible": true it also ends,
                   failing with EINTR, when the caller gets a signal (the kernel's
                   FUSE_INTERRUPT); otherwise the caller cannot be killed meanwhile.
           eio     fail with EIO, or with the errno named by "errno" ("ENXIO", ...).
                   Any errno name also works as the fault itself ("fault": "enospc").
           short   reads return only `bytes` bytes (default half the request).
           size    getattr reports `size` bytes; reads are untouched (ignores op).
           shrink  getattr reports `size`; reads at or past `size` return b"" and
                   reads crossing it are cut there (ignores op): the file "shrinks
                   between fstat and pread".
  Several rules may match one operation; they apply in file order (stalls first
  sleep, an error ends the operation, short/shrink cut the data).

Counters go to faultfs-stats.json next to the control file (atomically replaced at
most every 100 ms, and at once on each fault):
    {"ops": {"read": 9, ...}, "faults": {"stall": 1}, "active_stalls": 1,
     "files": {"slow.qcow2": {"ops": {...}, "faults": {"stall": 1}}},
     "control_error": null, "updated": 1700000000.0}
A stall is counted when it starts, so a test can wait for it before acting.

Reads reach the daemon as the kernel splits them: with direct_io a pread of N bytes
becomes FUSE reads of at most 128 KiB (libfuse2 cannot negotiate bigger), and rules
match each of those requests, not the caller's pread (an error or short reply ends
the caller's pread there). mmap(MAP_SHARED) fails with ENODEV under direct_io.

A caller blocked in a stall that is not interruptible is in D state: not even SIGKILL
ends it until the stall ends. If fs.fuse.default_request_timeout (Linux 6.14+) is set
when mounting, a request stalled longer than that aborts the whole connection
(callers get ECONNABORTED, then ENOTCONN) and faultfs exits. On SIGTERM faultfs ends
all stalls and unmounts (fusermount -u; if busy, umount -f, which aborts the
connection; then umount -l), so it exits even while files are held open.
"""

import argparse
import ctypes
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import fusepy as fuse
except ImportError:
    try:
        import fuse
    except (ImportError, OSError) as e:  # OSError: fusepy raises it when libfuse is missing
        fuse = e
except OSError as e:
    fuse = e

OPS = ("read", "open", "getattr", "readdir")
FAULTS = ("stall", "eio", "errno", "short", "size", "shrink")
POLL = 0.05  # stall granularity, seconds


def _rel(path):
    """FUSE path or rule file name -> path relative to the mount root ('' = root)."""
    path = path.strip("/")
    while path.startswith("./"):
        path = path[2:]
    return "" if path == "." else path


def _rule(raw):
    """Validate and normalise one control-file rule (raises ValueError)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
        raise ValueError("rule needs a string 'file': %r" % (raw,))
    r = dict(raw, file=_rel(raw["file"]), op=raw.get("op", "read"))
    r["key"] = json.dumps(raw, sort_keys=True)  # identity, so a stall sees its rule go
    fault = str(raw.get("fault", "")).lower()
    if fault not in FAULTS:
        if not isinstance(getattr(errno, fault.upper(), None), int):
            raise ValueError("unknown fault %r" % raw.get("fault"))
        r["errno"], fault = fault.upper(), "eio"
    r["fault"] = fault
    if r["op"] not in OPS:
        raise ValueError("unknown op %r" % r["op"])
    if fault in ("eio", "errno"):
        name = str(r.get("errno", "EIO")).upper()
        if not isinstance(getattr(errno, name, None), int):
            raise ValueError("unknown errno %r" % name)
        r["errno"] = getattr(errno, name)
    if fault in ("size", "shrink") and not isinstance(raw.get("size"), int):
        raise ValueError("%s needs an integer 'size'" % fault)
    if fault == "stall" and not isinstance(raw.get("seconds", 0), (int, float, type(None))):
        raise ValueError("stall 'seconds' must be a number or null")
    r["from"] = raw.get("from") or 0
    return r


class Control:
    """The control file's rules, reloaded when the file changes."""

    def __init__(self, path):
        self.path, self.sig, self.rules, self.error = path, None, [], None
        self.lock = threading.Lock()

    def current(self):
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            sig = None
        with self.lock:
            if sig != self.sig:
                self.sig = sig
                try:
                    if sig is None:
                        self.rules = []
                    else:
                        with open(self.path) as f:
                            self.rules = [_rule(r) for r in json.load(f).get("rules", [])]
                    self.error = None
                except (OSError, ValueError, AttributeError, TypeError) as e:  # keep old rules
                    self.error = "%s: %s" % (self.path, e)
                    print("faultfs: bad control file " + self.error, file=sys.stderr, flush=True)
            return self.rules


class Stats:
    """Per-file operation and fault counters, written as JSON."""

    def __init__(self, path, control):
        self.path, self.control = path, control
        self.lock = threading.Lock()
        self.data = {"ops": {}, "faults": {}, "active_stalls": 0, "files": {}}
        self.dirty, self.last = False, 0.0

    @staticmethod
    def _inc(d, k, n=1):
        d[k] = d.get(k, 0) + n

    def _file(self, rel):
        return self.data["files"].setdefault(rel or ".", {"ops": {}, "faults": {}})

    def op(self, rel, op):
        with self.lock:
            self._inc(self.data["ops"], op)
            self._inc(self._file(rel)["ops"], op)
            self.dirty = True

    def fault(self, rel, kind, stalls=0):
        with self.lock:
            self._inc(self.data["faults"], kind)
            self._inc(self._file(rel)["faults"], kind)
            self.data["active_stalls"] += stalls
            self._write()

    def stall_done(self):
        with self.lock:
            self.data["active_stalls"] -= 1
            self.dirty = True

    def flush(self, force=False):
        with self.lock:
            if force or (self.dirty and time.monotonic() - self.last >= 0.1):
                self._write()

    def _write(self):
        self.data["control_error"] = self.control.error
        self.data["updated"] = time.time()
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        try:
            with open(tmp, "w") as f:
                json.dump(self.data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            print("faultfs: cannot write stats: %s" % e, file=sys.stderr, flush=True)
        self.dirty, self.last = False, time.monotonic()


class FaultFS(fuse.Operations if not isinstance(fuse, Exception) else object):
    use_ns = True  # getattr returns st_*time in nanoseconds

    def __init__(self, source, control, on_mounted):
        self.root = source
        self.control = Control(control)
        self.stats = Stats(os.path.join(os.path.dirname(control), "faultfs-stats.json"),
                           self.control)
        self.stopping = threading.Event()
        self.on_mounted = on_mounted
        self.session = None  # libfuse2's struct fuse_session *, set by init()

    def _full(self, rel):
        return os.path.join(self.root, rel)

    def _apply(self, op, rel, offset=0, size=0):
        """Count the operation, run stalls and errors; return the data-shaping rules."""
        self.stats.op(rel, op)
        shaping = []
        for r in self.control.current():
            if r["file"] != rel:
                continue
            if r["fault"] in ("size", "shrink"):
                shaping.append(r)
                continue
            if r["op"] != op:
                continue
            if op == "read" and not (offset + size > r["from"] and
                                     (r.get("to") is None or offset < r["to"])):
                continue
            if r["fault"] == "short":
                shaping.append(r)
            elif r["fault"] == "stall":
                self._stall(rel, r)
            else:
                self.stats.fault(rel, r["fault"])
                raise fuse.FuseOSError(r["errno"])
        return shaping

    def _stall(self, rel, rule):
        self.stats.fault(rel, "stall", stalls=1)
        seconds = rule.get("seconds")
        deadline = time.monotonic() + (float("inf") if seconds is None else seconds)
        try:
            while not self._gone():
                left = deadline - time.monotonic()
                if left <= 0 or rule["key"] not in (r["key"] for r in self.control.current()):
                    break
                if rule.get("interruptible") and fuse._libfuse.fuse_interrupted():
                    raise fuse.FuseOSError(errno.EINTR)
                self.stopping.wait(min(POLL, left))
        finally:
            self.stats.stall_done()

    def _gone(self):
        """Is the filesystem unmounting, or its kernel connection gone (unmounted
        from outside, aborted, or a kernel request timeout)?"""
        return self.stopping.is_set() or bool(
            self.session and fuse._libfuse.fuse_session_exited(self.session))

    # FUSE operations -----------------------------------------------------------

    def init(self, path):
        lib = fuse._libfuse  # fusepy leaves these libfuse2 calls unwrapped
        lib.fuse_get_session.restype = ctypes.c_void_p
        lib.fuse_get_session.argtypes = lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
        self.session = lib.fuse_get_session(lib.fuse_get_context().contents.fuse)
        self.on_mounted()

    def getattr(self, path, fh=None):
        rel = _rel(path)
        shaping = self._apply("getattr", rel)
        st = os.lstat(self._full(rel))
        attrs = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid",
                                             "st_size", "st_blocks", "st_rdev")}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        for r in shaping:
            if r["fault"] in ("size", "shrink"):
                self.stats.fault(rel, r["fault"])
                attrs["st_size"] = r["size"]
        return attrs

    def readdir(self, path, fh):
        rel = _rel(path)
        self._apply("readdir", rel)
        return [".", ".."] + os.listdir(self._full(rel))

    def readlink(self, path):
        rel = _rel(path)
        self.stats.op(rel, "readlink")
        return os.readlink(self._full(rel))

    def statfs(self, path):
        self.stats.op(_rel(path), "statfs")
        st = os.statvfs(self.root)
        return {k: getattr(st, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                            "f_bavail", "f_files", "f_ffree", "f_favail",
                                            "f_flag", "f_namemax")}

    def open(self, path, flags):
        rel = _rel(path)
        self._apply("open", rel)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise fuse.FuseOSError(errno.EROFS)
        return os.open(self._full(rel), os.O_RDONLY)

    def read(self, path, size, offset, fh):
        rel = _rel(path or "")
        shaping = self._apply("read", rel, offset, size)
        data = os.pread(fh, size, offset)
        for r in shaping:
            if r["fault"] == "short":
                n = r.get("bytes")
                data = data[:max(1, size // 2) if n is None else n]
            elif r["fault"] == "shrink" and offset + len(data) > r["size"]:
                data = data[:max(0, r["size"] - offset)]
            else:
                continue
            self.stats.fault(rel, r["fault"])
        return data

    def release(self, path, fh):
        os.close(fh)

    # Everything else is refused by fuse.Operations (EROFS / ENOTSUP) or the ro mount.


def _mounted(mnt):
    """Is mnt a mount point in /proc/self/mountinfo (works on dead FUSE mounts too)?"""
    try:
        with open("/proc/self/mountinfo") as f:
            points = [l.split()[4] for l in f]
    except OSError:
        return os.path.ismount(mnt)
    esc = mnt.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")
    return esc in points


def _unmount(mnt, attempt):
    """Unmount, escalating: fusermount -u, then umount -f (aborts the FUSE connection,
    so a busy mount still lets the session end), then umount -l."""
    cmds = [["fusermount", "-u", "-q", mnt], ["umount", "-f", mnt], ["umount", "-l", mnt]]
    for cmd in cmds[:attempt + 1]:
        if not _mounted(mnt):
            return
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Read-only passthrough FUSE filesystem with "
                                 "injectable faults (see the module docstring).")
    ap.add_argument("source")
    ap.add_argument("mountpoint")
    ap.add_argument("--control", help="JSON control file (default SOURCE/../faultfs-control.json)")
    args = ap.parse_args(argv)
    src, mnt = os.path.abspath(args.source), os.path.abspath(args.mountpoint)
    control = os.path.abspath(args.control or os.path.join(src, "..", "faultfs-control.json"))

    def fail(reason):
        print("faultfs: cannot mount %s at %s: %s" % (src, mnt, reason), file=sys.stderr, flush=True)
        sys.exit(2)

    if isinstance(fuse, Exception):
        fail("no python fuse module (apt-get install python3-fusepy; run /usr/bin/python3): %s" % fuse)
    if not os.path.isdir(src):
        fail("source is not a directory")
    if not os.path.isdir(mnt):
        fail("mountpoint is not a directory")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        fail("/dev/fuse is not accessible")

    # Signals: blocked in every thread (libfuse's workers inherit the mask) and taken
    # by one watcher thread, which ends stalls and unmounts; the FUSE loop then returns.
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    mounted, finished = threading.Event(), threading.Event()

    # Until the kernel's INIT arrives, libfuse's stderr goes to a file so that a failed
    # mount becomes our one-line message.
    saved_err = os.dup(2)
    captured = tempfile.TemporaryFile()
    os.dup2(captured.fileno(), 2)

    def on_mounted():
        os.dup2(saved_err, 2)
        fs.stats.flush(force=True)
        mounted.set()
        print("faultfs: mounted %s at %s" % (src, mnt), flush=True)

    fs = FaultFS(src, control, on_mounted)

    def watch_signals():
        signal.sigwait(sigs)
        fs.stopping.set()
        attempt = 0
        while not finished.is_set():
            if mounted.is_set():
                _unmount(mnt, attempt)
                attempt = min(attempt + 1, 2)
            finished.wait(1)

    def flush_stats():  # only once mounted: a failed mount must not clobber a live one's stats
        while not finished.wait(0.1):
            if mounted.is_set():
                fs.stats.flush()

    threading.Thread(target=watch_signals, daemon=True).start()
    threading.Thread(target=flush_stats, daemon=True).start()
    error = None
    try:
        fuse.FUSE(fs, mnt, foreground=True, nothreads=False, ro=True, direct_io=True,
                  attr_timeout=0, entry_timeout=0, negative_timeout=0, fsname="faultfs")
    except Exception as e:  # RuntimeError(status) when libfuse fails
        error = e
    finally:
        finished.set()
        fs.stopping.set()
        os.dup2(saved_err, 2)
    if not mounted.is_set():
        captured.seek(0)
        lines = [l.strip() for l in captured.read().decode(errors="replace").splitlines()]
        fail("; ".join(l for l in lines if l) or "libfuse failed (%s)" % error)
    if _mounted(mnt):  # libfuse leaves an aborted connection mounted
        _unmount(mnt, 2)
    fs.stats.flush(force=True)
    if error is not None:
        print("faultfs: %s" % error, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
