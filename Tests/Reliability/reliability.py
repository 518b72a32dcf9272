"""Helpers shared by the reliability scripts (storage-faults.py, limits.py): checks and ports."""

import socket

failures = []


def check(cond, message):
    """Prints PASS or FAIL and the message; a failure is remembered in `failures`."""
    print(("PASS " if cond else "FAIL ") + message, flush=True)
    if not cond:
        failures.append(message)


def free_port():
    """A loopback TCP port nobody listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
