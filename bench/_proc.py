"""Helpers the bench scripts share: printing, percentiles, and the processes they start.

Used by bench/chaos.py and bench/dispatch.py (and what imports them)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket

HOST = "127.0.0.1"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def pct(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..1); nan for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def die_with_parent() -> None:
    """In the child before exec (`preexec_fn`): SIGTERM when the script dies, even by SIGKILL
    (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                s = f.read()
        except OSError:
            continue
        if int(s[s.rfind(")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)
