"""What the broker holds for the run task, read from Redis itself (kombu's Redis transport).

Each queue `gpu.<pool>` is a set of Redis lists, one per priority step: `gpu.<pool>` for step 0
and `gpu.<pool><sep><step>` for the others (`sep` and `priority_steps` are the transport options
in settings). A message a worker has taken but not acknowledged (`acks_late`) sits in the
`unacked` hash (delivery tag → [message, exchange, routing key]) with its delivery time in the
`unacked_index` sorted set until the worker acknowledges it — or, after the visibility timeout,
kombu puts it back in its list.

`broker_scan` reads both, bounded (LRANGE and HSCAN in pages, at most `limit` messages), and
says for each job whether its message is still there. The reaper (`generations.services.reaper`)
publishes again only the jobs whose message is gone.

It also says which Redis server answered (`broker_identity`: `INFO server`'s `run_id`, new at
every start, and its uptime). Our Redis runs without persistence, so a restart loses every
message it held: the reaper uses the server's start time to look at once at the jobs published
before it, instead of only at those queued longer than GENERATIONS_REQUEUE_AFTER_S.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

logger = logging.getLogger(__name__)

RUN_TASK = "generations.tasks.run_generation"
PAGE = 500


@dataclass(frozen=True)
class BrokerIdentity:
    """The Redis server process that answered: `run_id` (random, new at every start of the
    server — a restart or a failover to another server changes it), `uptime_s` (whole seconds
    since that start) and `read_at_ts`, this host's wall clock just after INFO answered."""

    run_id: str
    uptime_s: int
    read_at_ts: float

    @property
    def started_at_ts(self) -> float:
        """The latest moment the server can have started, on this host's clock: a message sent
        before it is not in this server (without persistence). Redis counts its uptime in
        whole seconds of its clock (now's second minus its start's second), which may be up
        to a second more than the time since its start: hence the second added."""
        return self.read_at_ts - self.uptime_s + 1


def broker_identity(client) -> BrokerIdentity | None:
    """`INFO server` of the broker's Redis (None when the server refuses INFO — some managed
    Redis rename it — or its answer lacks the fields; a connection error raises)."""
    from redis.exceptions import ResponseError

    try:
        info = client.info("server")
    except ResponseError:
        logger.info("Broker: INFO server refused; restarts are noticed by the horizon only")
        return None
    read_at = time.time()
    try:
        return BrokerIdentity(
            run_id=str(info["run_id"]), uptime_s=int(info["uptime_in_seconds"]), read_at_ts=read_at
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class BrokerScan:
    """`present`: job ids with a run message waiting in a list or held by a worker that took
    it lately (or holds it until its countdown); `stale`: job id → delivery tags of messages a
    worker took more than `stale_after_s` ago without acknowledging them (a worker that died
    before it started the job: kombu would put them back only after the visibility timeout);
    `complete`: the pools whose lists were read to the end (a job of another pool can't be told
    lost); `read`: messages read; `identity`: the Redis server that answered, read before the
    messages (None when unknown); `broker`: which broker (its URL, password masked)."""

    present: set[str] = field(default_factory=set)
    stale: dict[str, set[bytes]] = field(default_factory=dict)
    complete: set[str] = field(default_factory=set)
    read: int = 0
    identity: BrokerIdentity | None = None
    broker: str = ""


def _job_id(message: dict) -> str | None:
    """The job id of a run-task message (kombu's JSON envelope, Celery's protocol 2 body)."""
    headers = message.get("headers") or {}
    if headers.get("task") != RUN_TASK:
        return None
    try:
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _eta_ts(message: dict) -> float | None:
    eta = (message.get("headers") or {}).get("eta")
    if not eta:
        return None
    try:
        return datetime.fromisoformat(eta).timestamp()
    except (TypeError, ValueError):
        return None


def broker_scan(
    *, pools: Iterable[str], now_ts: float, stale_after_s: float, limit: int
) -> BrokerScan:
    """Read the run messages of the pools' queues and the unacknowledged ones (unacked, the
    lists, unacked again: a message moving from a list to a worker between two reads is seen
    by one of them). Raises when the broker can't be read."""
    from config.celery_app import app

    scan = BrokerScan()
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        scan.broker = conn.as_uri()
        with channel.conn_or_acquire() as client:
            # First: a restart after this read empties what is read next, which the next scan
            # (a new run_id, a short uptime) tells.
            scan.identity = broker_identity(client)
            unacked_complete = _read_unacked(
                client, channel, scan, now_ts=now_ts, stale_after_s=stale_after_s, limit=limit
            )
            for pool in pools:
                if _read_lists(client, channel, scan, pool=pool, limit=limit):
                    scan.complete.add(pool)
            unacked_complete &= _read_unacked(
                client, channel, scan, now_ts=now_ts, stale_after_s=stale_after_s, limit=limit
            )
    if not unacked_complete:
        scan.complete.clear()  # a message of any pool may be among those not read
    # A job with a live message besides a stale one is not lost.
    for job_id in scan.present:
        scan.stale.pop(job_id, None)
    return scan


def _read_lists(client, channel, scan: BrokerScan, *, pool: str, limit: int) -> bool:
    queue = f"gpu.{pool}"
    keys = dict.fromkeys(channel._q_for_pri(queue, pri) for pri in channel.priority_steps)
    for key in keys:
        start = 0
        while True:
            if scan.read >= limit:
                logger.warning("Broker scan stopped at %d messages (in %s)", scan.read, key)
                return False
            # Index 0 is the newest (LPUSH); workers pop from the other end, which shifts no
            # index, and a push shifts them up: a page may repeat a message, never skip one.
            page = client.lrange(key, start, start + PAGE - 1)
            for raw in page:
                scan.read += 1
                job_id = _job_id(json.loads(raw))
                if job_id:
                    scan.present.add(job_id)
            if len(page) < PAGE:
                break
            start += PAGE
    return True


def _read_unacked(
    client, channel, scan: BrokerScan, *, now_ts: float, stale_after_s: float, limit: int
) -> bool:
    cursor = 0
    while True:
        if scan.read >= limit:
            logger.warning("Broker scan stopped at %d messages (in unacked)", scan.read)
            return False
        cursor, items = client.hscan(channel.unacked_key, cursor, count=PAGE)
        if items:
            tags = list(items)
            with client.pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.zscore(channel.unacked_index_key, tag)
                delivered = pipe.execute()
            for tag, at in zip(tags, delivered, strict=True):
                scan.read += 1
                try:
                    message = json.loads(items[tag])[0]
                except (TypeError, ValueError, IndexError):
                    continue
                job_id = _job_id(message)
                if not job_id:
                    continue
                eta = _eta_ts(message)
                taken_long_ago = at is not None and now_ts - at > stale_after_s
                due_long_ago = eta is None or now_ts - eta > stale_after_s
                if taken_long_ago and due_long_ago:
                    scan.stale.setdefault(job_id, set()).add(tag)
                else:
                    scan.present.add(job_id)
        if cursor == 0:
            return True


def unacked_forget(*, tags: Iterable[bytes]) -> int:
    """Drop unacknowledged messages a dead worker held (their job was published again), so
    kombu does not put them back after the visibility timeout as a second copy. A live worker
    that acknowledges one later acknowledges nothing. Returns how many were dropped."""
    tags = list(tags)
    if not tags:
        return 0
    from config.celery_app import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        with channel.conn_or_acquire() as client, client.pipeline() as pipe:  # MULTI/EXEC
            pipe.zrem(channel.unacked_index_key, *tags)
            pipe.hdel(channel.unacked_key, *tags)
            _removed, dropped = pipe.execute()
    return int(dropped)
