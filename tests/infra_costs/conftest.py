"""Helpers for the infra-costs tests: build pools, nodes, uptime and runs in the database and
the same data for the reference implementation (tests/infra_costs/reference.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from infra_costs.allocation import unit_cost_report
from infra_costs.models import GpuRun, Node, NodePool, PoolRate, UptimeInterval
from tests.infra_costs import reference

DATA = Path(__file__).parent / "data"


def at(value: str) -> datetime:
    """`"2026-01-05 01:00"` (UTC unless an offset is given) → aware datetime."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def d(value: str) -> date:
    return date.fromisoformat(value)


class World:
    """A dataset written to the database and kept for the reference implementation."""

    def __init__(self) -> None:
        self.pools: dict[str, NodePool] = {}
        self.nodes: dict[str, Node] = {}
        self.rates: list[reference.Rate] = []
        self.uptime: list[reference.Uptime] = []
        self.jobs: list[reference.Job] = []
        self._n = 0

    def pool(self, slug: str, *rates: tuple[str, str]) -> NodePool:
        pool = NodePool.objects.create(slug=slug, gpu_type=slug.upper())
        self.pools[slug] = pool
        for rate, effective_from in rates:
            self.rate(slug, rate, effective_from)
        return pool

    def rate(
        self,
        pool: str,
        rate: str,
        effective_from: str,
        *,
        warm: str | None = None,
        spot: str | None = None,
    ) -> None:
        PoolRate.objects.create(
            pool=self.pools[pool],
            hourly_rate_usd=Decimal(rate),
            warm_hourly_rate_usd=None if warm is None else Decimal(warm),
            spot_hourly_rate_usd=None if spot is None else Decimal(spot),
            effective_from=at(effective_from),
        )
        self.rates.append(
            reference.Rate(
                pool,
                Fraction(rate),
                at(effective_from),
                warm=None if warm is None else Fraction(warm),
                spot=None if spot is None else Fraction(spot),
            )
        )

    def node(self, name: str, pool: str) -> Node:
        if name not in self.nodes:
            self.nodes[name] = Node.objects.create(name=name, pool=self.pools[pool])
        return self.nodes[name]

    def up(
        self, node: str, start: str, end: str, pool: str | None = None, kind: str = "on_demand"
    ) -> None:
        n = self.nodes.get(node) or self.node(node, pool)
        UptimeInterval.objects.create(
            node=n, pool=n.pool, started_at=at(start), ended_at=at(end), rate_kind=kind
        )
        self.uptime.append(reference.Uptime(node, n.pool.slug, at(start), at(end), kind))

    def job(
        self,
        node: str,
        start: str,
        end: str,
        model: str = "m",
        status: str = "succeeded",
        pool: str | None = None,
    ) -> GpuRun:
        self._n += 1
        n = self.nodes.get(node) or self.node(node, pool)
        run = GpuRun.objects.create(
            external_id=f"j{self._n}",
            model_slug=model,
            pool=n.pool,
            node=n,
            started_at=at(start),
            finished_at=at(end),
            status=status,
            source="imported",
        )
        self.jobs.append(
            reference.Job(f"j{self._n}", model, node, n.pool.slug, at(start), at(end), status)
        )
        return run

    def report(self, start: str, end: str, **kwargs) -> dict:
        return unit_cost_report(d(start), d(end), **kwargs)

    def reference(self, start: str, end: str, *, timezone: str = "UTC", **kwargs) -> dict:
        return reference.report(
            rates=self.rates,
            uptime=self.uptime,
            jobs=self.jobs,
            start=d(start),
            end=d(end),
            tz=timezone,
            **kwargs,
        )


def reference_from_db(start: str, end: str, *, timezone: str = "UTC", **kwargs) -> dict:
    """The reference report of whatever the database holds (e.g. after the import commands)."""
    rates = [
        reference.Rate(
            r.pool.slug,
            Fraction(r.hourly_rate_usd),
            r.effective_from,
            warm=None if r.warm_hourly_rate_usd is None else Fraction(r.warm_hourly_rate_usd),
            spot=None if r.spot_hourly_rate_usd is None else Fraction(r.spot_hourly_rate_usd),
        )
        for r in PoolRate.objects.select_related("pool")
    ]
    uptime = [
        reference.Uptime(u.node.name, u.pool.slug, u.started_at, u.ended_at, u.rate_kind)
        for u in UptimeInterval.objects.select_related("node", "pool")
    ]
    jobs = [
        reference.Job(
            r.external_id,
            r.model_slug,
            r.node.name,
            r.pool.slug,
            r.started_at,
            r.finished_at,
            r.status,
        )
        for r in GpuRun.objects.filter(finished_at__isnull=False).select_related("node", "pool")
    ]
    return reference.report(
        rates=rates, uptime=uptime, jobs=jobs, start=d(start), end=d(end), tz=timezone, **kwargs
    )


@pytest.fixture
def world(db) -> World:
    return World()


def pool_row(report: dict, slug: str) -> dict:
    return next(p for p in report["pools"] if p["pool"] == slug)


def model_row(report: dict, slug: str) -> dict:
    return next(m for m in report["models"] if m["model"] == slug)


def close(value, expected, tol: Fraction = Fraction(101, 100_000_000)) -> bool:
    """A report value (6-dp string, int or None) equals an exact expected value to 1e-6."""
    if value is None or expected is None:
        return value is None and expected is None
    return abs(Fraction(Decimal(str(value))) - Fraction(expected)) <= tol


def assert_matches_reference(report: dict, ref: dict) -> None:
    """Every pool, model and total figure of the engine's report equals the reference's."""
    assert sorted(p["pool"] for p in report["pools"]) == sorted(ref["pools"])
    for row in report["pools"]:
        for key, expected in ref["pools"][row["pool"]].items():
            assert close(row[key], expected), (row["pool"], key, row[key], expected)
    assert sorted(m["model"] for m in report["models"]) == sorted(ref["models"])
    for row in report["models"]:
        for key, expected in ref["models"][row["model"]].items():
            assert close(row[key], expected), (row["model"], key, row[key], expected)
    for key, expected in ref["totals"].items():
        assert close(report["totals"][key], expected), (key, report["totals"][key], expected)
    outside = {
        w["node"]: Fraction(Decimal(w["seconds"]))
        for w in report["warnings"]
        if w["code"] == "job_outside_uptime"
    }
    assert set(outside) == set(ref["outside"]), (outside, ref["outside"])
    for node, secs in outside.items():
        assert close(secs, ref["outside"][node]), (node, secs, ref["outside"][node])
