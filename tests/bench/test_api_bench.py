"""bench/api.py's pieces that need no server: reading wrk's report, and the Lua scripts that
make every POST a new job and every cancel another job."""

from __future__ import annotations

import math

import pytest

from bench import api

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:41177/api/v1/models/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   151.10ms   80.00ms 560.40ms   80.00%
    Req/Sec    25.00     10.00    50.00     70.00%
  Latency Distribution
     50%  151.10ms
     75%  200.00ms
     90%  300.00ms
     99%  560.40ms
  392 requests in 8.01s, 1.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:     48.94
Transfer/sec:    128.00KB
"""


def test_a_wrk_report_gives_rate_percentiles_and_failures():
    r = api.parse_wrk("GET /api/v1/models/", WRK_OUTPUT)
    assert (r.rps, r.requests, r.bad) == (48.94, 392, 4 + 1 + 2)
    assert math.isclose(r.p50, 0.1511) and math.isclose(r.p99, 0.5604)


def test_latencies_in_microseconds_and_seconds_are_read_in_seconds():
    out = WRK_OUTPUT.replace("151.10ms", "950.00us").replace("560.40ms", "1.20s")
    r = api.parse_wrk("x", out)
    assert math.isclose(r.p50, 0.00095) and math.isclose(r.p99, 1.2)


def test_the_post_script_seeds_by_thread_and_counter_and_rotates_keys(tmp_path):
    text = api.post_script(tmp_path / "post.lua", prompt="p", tokens=["a", "b"]).read_text()
    assert "tid * 100000000 + seq" in text  # distinct per thread, increasing per request
    assert '"Bearer a","Bearer b"' in text
    assert 'thread:set("tid", next_tid)' in text


def test_the_cancel_script_gives_each_thread_its_own_ids(tmp_path):
    text = api.cancel_script(tmp_path / "c.lua", job_ids=["j1", "j2", "j3"], threads=2).read_text()
    assert 'local ids = {"j1","j2","j3"}' in text
    assert "n = tid" in text and "n = n + 2" in text


class FakeRedis:
    """LLEN/HLEN over plain dicts; `take` messages disappear at each read of the unacked hash
    (a worker acknowledging)."""

    def __init__(self, lists: dict[str, int], unacked: int, *, take: int = 0):
        self.lists, self.unacked, self.take = dict(lists), unacked, take

    def llen(self, key: str) -> int:
        return self.lists.get(key, 0)

    def hlen(self, key: str) -> int:
        assert key == "unacked"
        n = self.unacked
        for name, length in self.lists.items():  # the worker takes and acknowledges
            self.lists[name] = max(0, length - self.take)
        self.unacked = max(0, self.unacked - self.take)
        return n


def test_the_backlog_counts_every_priority_steps_list_and_the_unacknowledged():
    # The message of a cancelled job stays in Redis and the worker takes it like any other:
    # the latency phase used to start behind those the wrk phases left (its 1.1 s p50).
    lists, unacked_key = api.broker_keys("gpu.a100")
    assert lists == ["gpu.a100"] + [f"gpu.a100:{step}" for step in range(1, 10)]
    assert unacked_key == "unacked"
    client = FakeRedis({"gpu.a100": 3, "gpu.a100:6": 2, "gpu.a100:9": 1, "gpu.l4": 50}, 1)
    assert api.broker_backlog(client, lists=lists, unacked_key=unacked_key) == 3 + 2 + 1 + 1


def test_the_latency_phase_waits_until_the_worker_has_taken_every_message():
    lists = ["q", "q:1"]
    client = FakeRedis({"q": 4, "q:1": 2}, 1, take=1)
    first, _ = api.broker_drain(client, lists=lists, unacked_key="unacked", timeout=5, poll=0)
    assert first == 7
    assert api.broker_backlog(client, lists=lists, unacked_key="unacked") == 0


def test_a_worker_that_never_drains_the_queue_stops_the_bench():
    client = FakeRedis({"q": 1}, 0)
    with pytest.raises(SystemExit, match="left 1 messages"):
        api.broker_drain(client, lists=["q"], unacked_key="unacked", timeout=0.01, poll=0.005)
