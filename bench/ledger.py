#!/usr/bin/env python
"""Ledger benchmark: hold+capture pairs per second, service layer vs raw SQL.

Two paths do the same logical work per pair, on the same PostgreSQL, in the same run:

  service  credits.ledger.hold_create(account, amount, key) then credits.ledger.hold_capture(hold)
           through Django (the real tables, constraints, triggers and indexes);
  raw      plain psycopg on tables of its own (bench_raw_account / bench_raw_entry, numeric(18,3)):
             BEGIN; UPDATE account SET held += x WHERE balance - held - x >= -cap RETURNING …;
                    INSERT entry; COMMIT;
             BEGIN; UPDATE account SET balance -= x, held -= x RETURNING …; INSERT entry; COMMIT.

Each path runs at every thread count (each thread its own connection) on one hot account and on
N accounts picked at random. Every measurement: a warm-up, then a fixed duration; the matrix runs
--repeat times (alternating which path goes first) and the table shows medians. Then a table,
the targets (PASS/MISS), a statement / round-trip trace of one pair per path, and the ledger
invariant check (credits.selectors.ledger_drift() must be []).

The database (default gpucredits_bench) is created when missing and migrated; accounts are created
once and reused by later runs (--fresh drops and recreates the database).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _django

GRANT = Decimal("1000000000000.000")  # per account; numeric(18,3) allows ~1e15
TOP_UP_BELOW = Decimal("100000000000.000")
HOT_SLUG = "bench-hot"
SPREAD_PREFIX = "bench-a"
RAW_ACCOUNT = "bench_raw_account"
RAW_ENTRY = "bench_raw_entry"
RAW_HOT_ID = 0


# --- Arguments --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/ledger.py",
        description=__doc__,
        epilog=(
            "Example:\n"
            "  DATABASE_URL=postgres://postgres@127.0.0.1:5432/gpucredits_bench \\\n"
            "      .venv/bin/python bench/ledger.py\n"
            "  .venv/bin/python bench/ledger.py --quick\n"
            "  .venv/bin/python bench/ledger.py --threads 1,4,8,16,32 --seconds 10\n\n"
            "DATABASE_URL defaults to " + _django.DEFAULT_DATABASE_URL + ".\n"
            "Targets: service >= 50% of raw on the hot account at 8 threads; at the largest\n"
            "thread count every path/scenario keeps >= 50% of its own peak (no collapse)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured duration of each run (default 5; 1.5 with --quick)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="untimed warm-up before each measurement (default 1; 0.5 with --quick)",
    )
    p.add_argument(
        "--threads", default="1,8,32", help="comma-separated thread counts (default 1,8,32)"
    )
    p.add_argument(
        "--accounts",
        type=int,
        default=None,
        help="accounts in the spread scenario (default 10000; 1000 with --quick)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="run the whole matrix N times, alternating which path goes first; the table "
        "shows the median (default 3; 1 with --quick)",
    )
    p.add_argument("--amount", default="1.250", help="credits per hold (default 1.250)")
    p.add_argument("--scenarios", default="hot,spread", help="hot, spread or both (default)")
    p.add_argument("--paths", default="service,raw", help="service, raw or both (default)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short smoke run: 1.5 s per measurement, 1000 spread accounts, 1 repetition",
    )
    p.add_argument(
        "--server-side-binding",
        action="store_true",
        help="experiment: run the service path with Django OPTIONS server_side_binding=True and "
        "prepare_threshold=5 (psycopg prepares repeated statements, as the raw path does)",
    )
    p.add_argument(
        "--async-commit",
        action="store_true",
        help="diagnostic: both paths run with synchronous_commit=off in their sessions, which "
        "takes the disk's fsync latency (noisy on a shared machine) out of the comparison",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="drop and recreate the database first (its name must contain 'bench')",
    )
    p.add_argument(
        "--no-trace",
        action="store_true",
        help="skip the statement / round-trip trace of one pair per path",
    )
    p.add_argument(
        "--profile",
        type=int,
        metavar="PAIRS",
        default=0,
        help="also cProfile PAIRS service pairs (one thread), print the top functions",
    )
    args = p.parse_args(argv)
    args.seconds = args.seconds if args.seconds is not None else (1.5 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.accounts = args.accounts if args.accounts is not None else (1000 if args.quick else 10_000)
    args.repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    args.paths = [s.strip() for s in args.paths.split(",") if s.strip()]
    args.amount = Decimal(args.amount)
    if not args.threads or min(args.threads) < 1:
        p.error("--threads needs positive integers")
    if set(args.scenarios) - {"hot", "spread"} or set(args.paths) - {"service", "raw"}:
        p.error("--scenarios takes hot,spread; --paths takes service,raw")
    if args.accounts < 1:
        p.error("--accounts must be >= 1")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --- Fixtures: service side -------------------------------------------------------------------


def service_hot_account():
    """The hot account: an organization made through the service (it gets its subscription and
    plan grant) plus a big purchase grant; topped up on later runs when it runs low."""
    from accounts.models import Organization, Plan
    from accounts.services import organization_create
    from credits import ledger
    from credits.models import CreditAccount

    org = Organization.objects.filter(slug=HOT_SLUG).first()
    if org is None:
        plan = Plan.objects.filter(slug="starter").first() or Plan.objects.order_by("pk").first()
        org = organization_create(name="Bench hot", slug=HOT_SLUG, plan=plan)
    account = ledger.account_get_or_create(organization=org)
    if account.available < TOP_UP_BELOW:
        ledger.grant_create(
            account=account,
            amount=GRANT,
            source="purchase",
            idempotency_key=f"bench-topup-{uuid.uuid4().hex}",
        )
    return CreditAccount.objects.get(pk=account.pk)


def service_spread_accounts(n: int) -> list:
    """N accounts, created set-based: organizations and accounts by bulk_create, then one SQL
    statement gives every new account a purchase grant with its grant entry and allocation,
    exactly as grant_create would (balance, version 1, entry sequence 1; the ledger's own
    entry and allocation inserts), so every ledger invariant holds. Reused by later runs."""
    from django.db import connection, transaction

    from accounts.models import Organization
    from credits.ledger._core import ALLOC_INSERT, ENTRY_INSERT  # the ledger's own inserts
    from credits.models import CreditAccount, CreditGrant

    slugs = [f"{SPREAD_PREFIX}{i:05d}" for i in range(n)]
    with transaction.atomic():
        have = set(Organization.objects.filter(slug__in=slugs).values_list("slug", flat=True))
        Organization.objects.bulk_create(
            [Organization(slug=s, name=f"Bench {s}") for s in slugs if s not in have],
            batch_size=2000,
        )
        org_ids = list(Organization.objects.filter(slug__in=slugs).values_list("pk", flat=True))
        with_account = set(
            CreditAccount.objects.filter(organization_id__in=org_ids).values_list(
                "organization_id", flat=True
            )
        )
        CreditAccount.objects.bulk_create(
            [CreditAccount(organization_id=o) for o in org_ids if o not in with_account],
            batch_size=2000,
        )
        ids = list(
            CreditAccount.objects.filter(organization_id__in=org_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        a, g = CreditAccount._meta.db_table, CreditGrant._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH fresh AS (
                    SELECT id FROM {a}
                    WHERE id = ANY(%s) AND version = 0 AND balance = 0 AND held = 0
                    FOR UPDATE
                ), g AS (
                    INSERT INTO {g} (account_id, source, amount, remaining, priority, expires_at,
                                     expired_at, reference, created_at)
                    SELECT id, 'purchase', %s, %s, 40, NULL, NULL, 'bench setup', now()
                    FROM fresh RETURNING id, account_id, amount
                ), e AS (
                    {ENTRY_INSERT}
                    SELECT account_id, 1, 'grant', amount, amount, 0, amount, 0, id, NULL,
                           'bench-setup', NULL, 'purchase grant', now()
                    FROM g RETURNING id, account_id, grant_id, amount
                ), al AS (
                    {ALLOC_INSERT}
                    SELECT id, account_id, grant_id, amount FROM e
                )
                UPDATE {a} AS acc SET balance = g.amount, version = 1, updated_at = now()
                FROM g WHERE acc.id = g.account_id
                """,
                [ids, GRANT, GRANT],
            )
            funded = cursor.rowcount
    if funded:
        say(f"  funded {funded} new service accounts (set-based)")
    return [CreditAccount(pk=i) for i in ids]


# --- Fixtures: raw side -----------------------------------------------------------------------

RAW_DDL = f"""
CREATE TABLE IF NOT EXISTS {RAW_ACCOUNT} (
    id            bigint PRIMARY KEY,
    balance       numeric(18,3) NOT NULL,
    held          numeric(18,3) NOT NULL DEFAULT 0 CHECK (held >= 0),
    overage_limit numeric(18,3) NOT NULL DEFAULT 0 CHECK (overage_limit >= 0),
    version       bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {RAW_ENTRY} (
    id              bigserial PRIMARY KEY,
    account_id      bigint NOT NULL REFERENCES {RAW_ACCOUNT} (id),
    sequence        bigint NOT NULL,
    kind            varchar(16) NOT NULL,
    amount          numeric(18,3) NOT NULL CHECK (amount > 0),
    balance_delta   numeric(18,3) NOT NULL,
    held_delta      numeric(18,3) NOT NULL,
    balance_after   numeric(18,3) NOT NULL,
    held_after      numeric(18,3) NOT NULL,
    idempotency_key varchar(255) NOT NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (account_id, idempotency_key),
    UNIQUE (account_id, sequence)
);
"""


def raw_setup(url: str, n: int) -> None:
    """Raw accounts 0 (hot) and 1..n (spread), each with its grant entry, in one statement."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_DDL)
        cur = conn.execute(
            f"""
            WITH a AS (
                INSERT INTO {RAW_ACCOUNT} (id, balance, held, overage_limit, version)
                SELECT i, %s, 0, 0, 1 FROM generate_series(0, %s) AS i
                ON CONFLICT (id) DO NOTHING
                RETURNING id, balance
            )
            INSERT INTO {RAW_ENTRY} (account_id, sequence, kind, amount, balance_delta,
                                     held_delta, balance_after, held_after, idempotency_key,
                                     created_at)
            SELECT id, 1, 'grant', balance, balance, 0, balance, 0, 'setup', now() FROM a
            """,
            [GRANT, n],
        )
        if cur.rowcount:
            say(f"  created {cur.rowcount} raw accounts (one statement)")


RAW_HOLD = (
    f"UPDATE {RAW_ACCOUNT} SET held = held + %s, version = version + 1, updated_at = now() "
    f"WHERE id = %s AND balance - held - %s >= -overage_limit RETURNING balance, held, version"
)
RAW_CAPTURE = (
    f"UPDATE {RAW_ACCOUNT} SET balance = balance - %s, held = held - %s, version = version + 1, "
    f"updated_at = now() WHERE id = %s RETURNING balance, held, version"
)
RAW_INSERT = (
    f"INSERT INTO {RAW_ENTRY} (account_id, sequence, kind, amount, balance_delta, held_delta, "
    f"balance_after, held_after, idempotency_key, created_at) "
    f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
)


class Insufficient(Exception):
    pass


def raw_pair(conn, account_id: int, amount: Decimal, key: str) -> None:
    cur = conn.cursor()
    with conn.transaction():
        row = cur.execute(RAW_HOLD, (amount, account_id, amount)).fetchone()
        if row is None:
            raise Insufficient(account_id)
        cur.execute(
            RAW_INSERT,
            (account_id, row[2], "hold", amount, 0, amount, row[0], row[1], f"hold:{key}"),
        )
    with conn.transaction():
        row = cur.execute(RAW_CAPTURE, (amount, amount, account_id)).fetchone()
        cur.execute(
            RAW_INSERT,
            (
                account_id,
                row[2],
                "capture",
                amount,
                -amount,
                -amount,
                row[0],
                row[1],
                f"capture:{key}",
            ),
        )


RAW_DRIFT = f"""
SELECT a.id, a.balance, a.held, a.version, e.b, e.h, e.m
FROM {RAW_ACCOUNT} a
JOIN (SELECT account_id, SUM(balance_delta) AS b, SUM(held_delta) AS h, MAX(sequence) AS m,
             COUNT(*) AS n
      FROM {RAW_ENTRY} GROUP BY account_id) e ON e.account_id = a.id
WHERE a.balance <> e.b OR a.held <> e.h OR a.version <> e.m OR e.m <> e.n
"""


# Rows the pairs update (every hold makes a dead version of the hot account and grant rows);
# vacuumed before each measurement so that runs start alike, as autovacuum would keep them.
UPDATED_TABLES = ("credits_creditaccount", "credits_creditgrant", RAW_ACCOUNT)
ALL_TABLES = (
    *UPDATED_TABLES,
    "credits_credithold",
    "credits_ledgerentry",
    "credits_entryallocation",
    RAW_ENTRY,
)


def vacuum(url: str, tables: tuple[str, ...], *, analyze: bool = False) -> None:
    with raw_connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM {'(ANALYZE) ' if analyze else ''}{', '.join(tables)}")


# --- The two paths ----------------------------------------------------------------------------


@dataclass
class Path_:
    """One path: per-thread context factory, the pair, and the per-thread teardown."""

    name: str
    open: Callable[[], object]
    pair: Callable[[object, object, str], None]  # (ctx, account, key)
    close: Callable[[object], None]


def service_path(amount: Decimal) -> Path_:
    from django.db import connection

    from credits import ledger

    def pair(_ctx, account, key):
        hold = ledger.hold_create(account=account, amount=amount, key=key)
        ledger.hold_capture(hold=hold)

    def close(_ctx):
        connection.close()

    return Path_("service", lambda: None, pair, close)


RAW_CONNECT_OPTIONS: dict = {}


def raw_connect(url: str, **kwargs):
    import psycopg

    return psycopg.connect(url, **RAW_CONNECT_OPTIONS, **kwargs)


def raw_path(url: str, amount: Decimal) -> Path_:
    def open_():
        return raw_connect(url, autocommit=True)

    def pair(conn, account_id, key):
        raw_pair(conn, account_id, amount, key)

    return Path_("raw", open_, pair, lambda conn: conn.close())


# --- Runner -----------------------------------------------------------------------------------


@dataclass
class Result:
    path: str
    scenario: str
    threads: int
    pairs: int
    seconds: float
    errors: int
    first_error: str | None
    latencies: list[float] = field(repr=False, default_factory=list)

    @property
    def rate(self) -> float:
        return self.pairs / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


@dataclass
class Agg:
    """Every repetition of one (path, scenario, threads) cell; its rate is the median."""

    path: str
    scenario: str
    threads: int
    runs: list[Result]

    @property
    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def first_error(self) -> str | None:
        return next((r.first_error for r in self.runs if r.first_error), None)

    def pct(self, q: float) -> float:
        return Result(
            self.path,
            self.scenario,
            self.threads,
            0,
            0.0,
            0,
            None,
            [x for r in self.runs for x in r.latencies],
        ).pct(q)


def measure(
    path: Path_,
    scenario: str,
    accounts: list,
    threads: int,
    *,
    warmup: float,
    seconds: float,
    tag: str,
) -> Result:
    counts = [0] * threads
    errors = [0] * threads
    lats: list[list[float]] = [[] for _ in range(threads)]
    first_error: list[str] = []
    stop = threading.Event()
    measuring = threading.Event()
    ready = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        rng = random.Random(i * 7919 + threads)
        ctx = None
        try:
            ctx = path.open()
            ready.wait()
            seq = itertools.count()
            single = accounts[0] if len(accounts) == 1 else None
            while not stop.is_set():
                account = single if single is not None else rng.choice(accounts)
                key = f"{tag}-{i}-{next(seq)}"
                t0 = time.perf_counter()
                try:
                    path.pair(ctx, account, key)
                except Exception as exc:
                    errors[i] += 1
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.001)
                    continue
                counts[i] += 1
                if measuring.is_set():
                    lats[i].append(time.perf_counter() - t0)
        except threading.BrokenBarrierError:
            pass
        finally:
            if ctx is not None or path.name == "service":
                path.close(ctx)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    ready.wait(timeout=60)
    time.sleep(warmup)
    c0, e0, t0 = sum(counts), sum(errors), time.perf_counter()
    measuring.set()
    time.sleep(seconds)
    c1, e1, t1 = sum(counts), sum(errors), time.perf_counter()
    measuring.clear()
    stop.set()
    for t in pool:
        t.join()
    return Result(
        path.name,
        scenario,
        threads,
        c1 - c0,
        t1 - t0,
        e1 - e0,
        first_error[0] if first_error else None,
        [x for lat in lats for x in lat],
    )


# --- Round-trip trace (libpq protocol trace) --------------------------------------------------


@dataclass
class RoundTrip:
    sql: str
    start: float
    end: float
    gap_before: float  # client-side time since the previous round trip ended
    status: str  # ReadyForQuery: I (idle: the transaction ended), T (in a transaction), E


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\t")
_PARSE = re.compile(r'^\s*"([^"]*)" "(.*)" \d+(?: \S+)*\s*$', re.DOTALL)
_BIND = re.compile(r'^\s*"([^"]*)" "([^"]*)"')


def _ts(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def _messages(text: str):
    """(timestamp, direction, kind, payload) per protocol message; SQL may span lines."""
    current: list | None = None
    for line in text.split("\n"):
        if _STAMP.match(line):
            if current:
                yield tuple(current)
            parts = line.split("\t", 4)
            current = [parts[0], parts[1], parts[3], parts[4] if len(parts) > 4 else ""]
        elif current is not None:
            current[3] += "\n" + line
    if current:
        yield tuple(current)


def parse_trace(text: str) -> list[RoundTrip]:
    """Group a libpq trace into round trips (client messages … ReadyForQuery)."""
    names: dict[str, str] = {}
    trips: list[RoundTrip] = []
    start = None
    sql = ""
    last_end = None
    for stamp, direction, kind, payload in _messages(text):
        if direction == "F":
            if start is None:
                start, sql = _ts(stamp), ""
            if kind == "Query":
                body = payload.strip()
                sql = body[1:-1] if body.startswith('"') and body.endswith('"') else body
            elif kind == "Parse" and (m := _PARSE.match(payload)):
                if m.group(1):
                    names[m.group(1)] = m.group(2)
                sql = sql or m.group(2)
            elif kind == "Bind" and not sql and (m := _BIND.match(payload)):
                sql = names.get(m.group(2), f"(prepared {m.group(2)})")
        elif direction == "B" and kind == "ReadyForQuery" and start is not None:
            end = _ts(stamp)
            gap = start - last_end if last_end is not None else 0.0
            flat = " ".join(sql.replace('"', "").split())
            trips.append(RoundTrip(flat, start, end, gap, payload.strip()[:1]))
            last_end, start = end, None
    return trips


def split_transactions(trips: list[RoundTrip]) -> list[list[RoundTrip]]:
    """A transaction ends at the round trip after which the session is idle again (COMMIT, or
    a lone statement in autocommit)."""
    txs: list[list[RoundTrip]] = []
    cur: list[RoundTrip] = []
    for rt in trips:
        cur.append(rt)
        if rt.status == "I":
            txs.append(cur)
            cur = []
    if cur:
        txs.append(cur)
    return txs


_WRITES = re.compile(r"\b(UPDATE|INSERT INTO|DELETE FROM)\s+(\w+)", re.IGNORECASE)


def describe(sql: str, width: int = 150) -> str:
    """A statement on one line; a multi-statement CTE also lists the tables it writes."""
    head = sql[:width] + ("…" if len(sql) > width else "")
    writes = [f"{op.upper()} {table}" for op, table in _WRITES.findall(sql)]
    if sql.upper().startswith("WITH") and writes:
        return f"WITH … (one statement: {'; '.join(writes)})"
    return head


@dataclass
class TraceSummary:
    path: str
    pairs: int
    round_trips: float
    statements: list[str]
    statement_ms: list[float]  # median round-trip time of each statement of the pair
    before_ms: list[float]  # median Python time before each statement
    server_ms: float  # per pair: sum of round-trip times (network + server)
    client_ms: float  # per pair: time between round trips (Python)
    locked_trips: float  # per pair: round trips from the account UPDATE to COMMIT, inclusive
    locked_ms: float  # per pair: wall time the account row stays locked
    locked_client_ms: float  # …of which Python time between round trips


PAIR_MARK = "SELECT 'bench: next pair'"


def trace_pairs(
    path: str,
    run_pair: Callable[[], None],
    execute: Callable[[str], None],
    pgconn,
    account_table: str,
    pairs: int = 20,
    skip: int = 10,
) -> TraceSummary:
    """Trace `skip` + `pairs` pairs on one connection, a marker query before each (left out of
    the figures); the first `skip` pairs (psycopg prepares a statement on its 5th execution)
    are left out too."""
    with tempfile.TemporaryFile("w+b") as f:
        pgconn.trace(f.fileno())
        try:
            for _ in range(skip + pairs):
                execute(PAIR_MARK)
                run_pair()
        finally:
            pgconn.untrace()
        f.seek(0)
        all_trips = parse_trace(f.read().decode("utf-8", "replace"))
    by_pair: list[list[RoundTrip]] = []
    for rt in all_trips:
        if rt.sql == PAIR_MARK:
            by_pair.append([])
        elif by_pair:
            by_pair[-1].append(rt)
    # Steady state only: drop the first `skip` pairs, and the odd pair that still carries a
    # one-off round trip (psycopg preparing a statement in its own round trip).
    by_pair = [p for p in by_pair if p][skip:]
    shape = statistics.mode(len(p) for p in by_pair)
    by_pair = [p for p in by_pair if len(p) == shape]
    pairs = len(by_pair)
    trips = [rt for p in by_pair for rt in p]
    txs = [tx for p in by_pair for tx in split_transactions(p)]
    first_pair = by_pair[0]
    same_shape = by_pair
    statement_ms = [
        statistics.median((p[i].end - p[i].start) * 1000 for p in same_shape)
        for i in range(len(first_pair))
    ]
    before_ms = [
        statistics.median(p[i].gap_before * 1000 for p in same_shape)
        for i in range(len(first_pair))
    ]
    server = sum(rt.end - rt.start for rt in trips)
    client = sum(rt.gap_before for rt in trips)
    locked_trips = 0
    locked = locked_client = 0.0
    marker = re.compile(rf"\bUPDATE {account_table}\b", re.IGNORECASE)
    for tx in txs:
        idx = next((i for i, rt in enumerate(tx) if marker.search(rt.sql)), None)
        if idx is None:
            continue
        held = tx[idx:]
        locked_trips += len(held)
        locked += held[-1].end - held[0].start
        locked_client += sum(rt.gap_before for rt in held[1:])
    return TraceSummary(
        path=path,
        pairs=pairs,
        round_trips=len(trips) / pairs,
        statements=[rt.sql for rt in first_pair],
        statement_ms=statement_ms,
        before_ms=before_ms,
        server_ms=server / pairs * 1000,
        client_ms=client / pairs * 1000,
        locked_trips=locked_trips / pairs,
        locked_ms=locked / pairs * 1000,
        locked_client_ms=locked_client / pairs * 1000,
    )


# --- Report -----------------------------------------------------------------------------------


def fmt_rate(r: float | None) -> str:
    return "—" if r is None else f"{r:,.0f}"


def report(results: list[Result], args) -> bool:
    cells: dict[tuple, Agg] = {}
    for r in results:
        key = (r.path, r.scenario, r.threads)
        cells.setdefault(key, Agg(*key, [])).runs.append(r)
    by = cells
    scen_label = {"hot": "hot (1 account)", "spread": f"spread ({args.accounts:,} accounts)"}
    w = max(len(v) for v in scen_label.values())
    say()
    say("=" * 78)
    say(
        "Hold+capture pairs per second (higher is better)"
        + (f"; median of {args.repeat} runs" if args.repeat > 1 else "")
    )
    say("=" * 78)
    say(f"{'scenario':<{w}}  {'threads':>7}  {'service/s':>10}  {'raw/s':>10}  {'service/raw':>11}")
    say(f"{'-' * w}  {'-' * 7}  {'-' * 10}  {'-' * 10}  {'-' * 11}")
    for scenario in args.scenarios:
        for n in args.threads:
            s, r = by.get(("service", scenario, n)), by.get(("raw", scenario, n))
            ratio = f"{s.rate / r.rate:.0%}" if s and r and r.rate else "—"
            say(
                f"{scen_label[scenario]:<{w}}  {n:>7}  {fmt_rate(s and s.rate):>10}  "
                f"{fmt_rate(r and r.rate):>10}  {ratio:>11}"
            )
    top = max(args.threads)
    say()
    say(f"Throughput at {top} threads as % of the path's own peak")
    head = f"{top} thr/s"
    say(f"{'path':<8}  {'scenario':<{w}}  {'peak/s':>10}  {'at':>4}  {head:>10}  {'%':>5}")
    collapse_ok = True
    collapse_lines = []
    for path in args.paths:
        for scenario in args.scenarios:
            rs = [by[(path, scenario, n)] for n in args.threads if (path, scenario, n) in by]
            if not rs:
                continue
            peak = max(rs, key=lambda x: x.rate)
            last = by[(path, scenario, top)]
            pct = last.rate / peak.rate if peak.rate else 0.0
            ok = pct >= 0.5
            collapse_ok &= ok
            collapse_lines.append(f"{path} {scenario} {pct:.0%}")
            say(
                f"{path:<8}  {scen_label[scenario]:<{w}}  {peak.rate:>10,.0f}  {peak.threads:>4}  "
                f"{last.rate:>10,.0f}  {pct:>5.0%}"
            )
    say()
    say("Latency per pair, ms (p50 / p99), and the pairs/s of each run")
    for r in by.values():
        runs = " ".join(f"{x:,.0f}" for x in r.rates)
        say(
            f"  {r.path:<8} {r.scenario:<7} {r.threads:>3} thr  "
            f"{r.pct(0.5):7.2f} / {r.pct(0.99):7.2f}   runs: {runs}"
            + (f"   errors: {r.errors} ({r.first_error})" if r.errors else "")
        )
    say()
    say("Targets")
    s8, r8 = by.get(("service", "hot", 8)), by.get(("raw", "hot", 8))
    if s8 and r8 and r8.rate:
        ratio = s8.rate / r8.rate
        verdict = (
            "PASS"
            if ratio >= 0.5
            else f"MISS ({(0.5 - ratio) * 100:.0f} points short: needs {0.5 * r8.rate:,.0f}/s)"
        )
        say(f"  service >= 50% of raw, hot account, 8 threads:  {ratio:.0%}  -> {verdict}")
        target1 = ratio >= 0.5
    else:
        say("  service >= 50% of raw, hot account, 8 threads:  not measured (needs 8 threads, hot)")
        target1 = False
    say(
        f"  {top} threads >= 50% of peak (no collapse):  {', '.join(collapse_lines)}  -> "
        f"{'PASS' if collapse_ok else 'MISS'}"
    )
    return target1 and collapse_ok


def print_trace(t: TraceSummary) -> None:
    say(
        f"\n{t.path}: {t.round_trips:.0f} round trips per pair "
        f"(steady state over {t.pairs} traced pairs, one thread, hot account)"
    )
    say(
        f"  per pair: {t.server_ms:.2f} ms waiting on PostgreSQL, {t.client_ms:.2f} ms in Python "
        f"between round trips"
    )
    say(
        f"  account row locked per pair: {t.locked_trips:.1f} round trips, {t.locked_ms:.2f} ms "
        f"(of which {t.locked_client_ms:.2f} ms Python between them)"
    )
    say("  statements of one pair (median ms: Python before it | round trip):")
    rows = zip(t.statements, t.before_ms, t.statement_ms, strict=True)
    for i, (sql, before, ms) in enumerate(rows, 1):
        say(f"   {i:>2}. {before:5.2f} | {ms:5.2f}  {describe(sql, 110)}")


# --- Main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    url = _django.database_url()
    started = time.perf_counter()
    say(
        f"Ledger benchmark on {_django.database_name(url)} "
        f"({os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f})"
    )
    say("[setup] database …")
    if _django.ensure_database(url, fresh=args.fresh):
        say(f"  created database {_django.database_name(url)}")
    _django.setup(url)
    say("  migrated")

    from django.db import connection

    if args.server_side_binding:  # before any connection opens; affects this process only
        connection.settings_dict["OPTIONS"].update(server_side_binding=True, prepare_threshold=5)
        say("  service path: server_side_binding=True, prepare_threshold=5 (experiment)")
    if args.async_commit:
        connection.settings_dict["OPTIONS"]["options"] = "-c synchronous_commit=off"
        RAW_CONNECT_OPTIONS["options"] = "-c synchronous_commit=off"
        say("  both paths: synchronous_commit=off (diagnostic)")

    from credits import ledger
    from credits.selectors import ledger_drift

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    say(f"  PostgreSQL {pg_version}")
    ledger_dir = Path(ledger.__file__).parent
    ledger_src = b"".join(p.read_bytes() for p in sorted(ledger_dir.glob("*.py")))
    say(
        f"  credits/ledger/*.py sha256 {hashlib.sha256(ledger_src).hexdigest()[:12]} "
        f"(the service code measured)"
    )

    say("[setup] accounts …")
    need_spread = "spread" in args.scenarios
    hot = service_hot_account()
    spread = service_spread_accounts(args.accounts) if need_spread else []
    raw_setup(url, args.accounts)
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
        cursor.execute("SHOW synchronous_commit")
        say(f"  synchronous_commit={cursor.fetchone()[0]} (every pair commits twice)")
    connection.close()
    if autovacuum != "on":
        say("  autovacuum is off on this server: the script vacuums its tables itself")
    vacuum(url, ALL_TABLES, analyze=True)
    say(
        f"  hot service account #{hot.pk}, {len(spread):,} spread service accounts, "
        f"raw accounts 0..{args.accounts}"
    )

    paths = {"service": service_path(args.amount), "raw": raw_path(url, args.amount)}
    targets = {
        ("service", "hot"): [hot],
        ("service", "spread"): spread,
        ("raw", "hot"): [RAW_HOT_ID],
        ("raw", "spread"): list(range(1, args.accounts + 1)),
    }
    run_id = uuid.uuid4().hex[:10]
    plan = []
    for rep in range(args.repeat):
        order = args.paths if rep % 2 == 0 else args.paths[::-1]  # alternate who goes first
        plan += [(rep, sc, n, p) for sc in args.scenarios for n in args.threads for p in order]
    est = len(plan) * (args.seconds + args.warmup)
    say(
        f"[run] {len(plan)} measurements × ({args.warmup:g} s warm-up + {args.seconds:g} s) "
        f"≈ {est:.0f} s"
    )
    results: list[Result] = []
    for i, (rep, scenario, n, p) in enumerate(plan, 1):
        print(f"  [{i:>2}/{len(plan)}] {p:<7} {scenario:<6} {n:>3} threads … ", end="", flush=True)
        vacuum(url, UPDATED_TABLES)
        r = measure(
            paths[p],
            scenario,
            targets[(p, scenario)],
            n,
            warmup=args.warmup,
            seconds=args.seconds,
            tag=f"b{run_id}-{rep}{scenario[0]}{n}{p[0]}",
        )
        results.append(r)
        say(
            f"{r.rate:8,.0f} pairs/s  p50 {r.pct(0.5):6.2f} ms  p99 {r.pct(0.99):7.2f} ms"
            f"  (load {os.getloadavg()[0]:.1f})"
            + (f"  ERRORS {r.errors}: {r.first_error}" if r.errors else "")
        )

    passed = report(results, args)

    if not args.no_trace:
        say()
        say("=" * 78)
        say("Round trips per pair (libpq protocol trace; BEGIN and COMMIT are round trips too)")
        say("=" * 78)
        counter = itertools.count()

        def service_pair() -> None:
            hold = ledger.hold_create(
                account=hot, amount=args.amount, key=f"b{run_id}-trace-{next(counter)}"
            )
            ledger.hold_capture(hold=hold)

        def service_execute(sql: str) -> None:
            with connection.cursor() as cursor:
                cursor.execute(sql)

        connection.ensure_connection()
        ts = trace_pairs(
            "service",
            service_pair,
            service_execute,
            connection.connection.pgconn,
            "credits_creditaccount",
        )
        connection.close()
        print_trace(ts)

        import psycopg

        with raw_connect(url, autocommit=True) as conn:
            tr = trace_pairs(
                "raw",
                lambda: raw_pair(conn, RAW_HOT_ID, args.amount, f"b{run_id}-t{next(counter)}"),
                conn.execute,
                conn.pgconn,
                RAW_ACCOUNT,
            )
        print_trace(tr)

    if args.profile:
        import cProfile
        import pstats

        say()
        say(f"cProfile: {args.profile} service pairs, one thread, hot account (top by tottime)")
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for k in range(args.profile):
            hold = ledger.hold_create(account=hot, amount=args.amount, key=f"b{run_id}-prof-{k}")
            ledger.hold_capture(hold=hold)
        prof.disable()
        say(f"  {args.profile / (time.perf_counter() - t0):,.0f} pairs/s under the profiler")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(18)
        connection.close()

    say()
    say("[check] ledger invariants …")
    drift = ledger_drift()
    say(
        f"  credits.selectors.ledger_drift() = {drift[:5]!r}"
        + (f" … ({len(drift)} in all)" if len(drift) > 5 else "")
    )
    import psycopg

    with psycopg.connect(url) as conn:
        raw_drift = conn.execute(RAW_DRIFT).fetchall()
    say(f"  raw tables drift = {raw_drift[:5]!r}")
    connection.close()
    say(
        f"\nDone in {time.perf_counter() - started:.0f} s "
        f"(load avg {os.getloadavg()[0]:.2f}). Targets: {'PASS' if passed else 'MISS'}"
    )
    return 1 if drift or raw_drift else 0


if __name__ == "__main__":
    sys.exit(main())
