"""The Redis window counter of rate limits (config/api/throttling.py)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from config.api import throttling

NOW = 1_800_000_030.25  # 30.25 s into a window: 29.75 s left → reset in 30 s


def test_hit_allows_up_to_the_limit_then_refuses():
    bucket = f"test:{uuid.uuid4()}"
    results = [throttling.hit(bucket, 2, now=NOW) for _ in range(3)]
    assert [allowed for allowed, _ in results] == [True, True, False]
    assert {reset for _, reset in results} == {30}


def test_concurrent_hits_never_exceed_the_limit():
    """8 threads × 10 requests against a limit of 50: exactly 50 pass (Redis INCR is atomic)."""
    bucket = f"test:{uuid.uuid4()}"
    start = threading.Barrier(8)

    def worker() -> list[bool]:
        start.wait()
        return [throttling.hit(bucket, 50, now=NOW)[0] for _ in range(10)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = [
            ok for future in [pool.submit(worker) for _ in range(8)] for ok in future.result()
        ]
    assert len(outcomes) == 80
    assert outcomes.count(True) == 50
