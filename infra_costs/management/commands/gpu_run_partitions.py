"""`manage.py gpu_run_partitions [--ahead N] [--detach YYYY-MM [--drop] | --attach YYYY-MM]`:
the monthly partitions of the GPU runs (migration infra_costs 0007, `infra_costs.partitions`)."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connection
from django.utils import timezone

from config.errors import ServiceError
from infra_costs import partitions, services


def _month(value: str) -> date:
    try:
        return date.fromisoformat(f"{value}-01")
    except ValueError:
        raise CommandError(f"Not a month (YYYY-MM): {value!r}") from None


class Command(BaseCommand):
    help = (
        "The GPU runs' monthly partitions: list them, make this month's and the next ones "
        "(--ahead), detach a closed month (--detach YYYY-MM; the table is kept unless "
        "--drop), or attach a detached month again (--attach YYYY-MM). The detach is a plain "
        "DETACH PARTITION with a lock timeout: CONCURRENTLY is refused by PostgreSQL on a "
        "table with a default partition. A detached month's hourly cost figures are frozen "
        "(never recomputed, since its runs are gone); --attach puts its table back, and "
        "recomputes those hours with its runs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--ahead", type=int, metavar="N", help="Months ahead to make.")
        parser.add_argument(
            "--detach",
            type=_month,
            metavar="YYYY-MM",
            help="A closed month to take out of the runs (refused while it has dirty hours).",
        )
        parser.add_argument("--drop", action="store_true", help="Drop the detached table.")
        parser.add_argument(
            "--attach",
            type=_month,
            metavar="YYYY-MM",
            help=(
                "A month detached without --drop, back into the runs (refused when its table "
                "is gone or holds runs of other months); its hours are then recomputed."
            ),
        )

    def handle(self, *args, **options):
        if options["drop"] and not options["detach"]:
            raise CommandError("--drop goes with --detach.")
        if options["detach"] and options["attach"]:
            raise CommandError("--detach or --attach: one at a time.")
        if options["ahead"] is not None:
            if not 0 <= options["ahead"] <= 24:
                raise CommandError("--ahead: 0 to 24 months.")
            made = partitions.gpu_run_partitions_ahead(now=timezone.now(), months=options["ahead"])
            self.stdout.write(f"{made} partition(s) made.")
        if options["detach"]:
            try:
                part = partitions.gpu_run_month_detach(
                    month=options["detach"], drop=options["drop"]
                )
            except ServiceError as exc:
                raise CommandError(exc.detail) from None
            except OperationalError as exc:  # the lock timeout: the runs were busy
                raise CommandError(f"Not detached, try again: {exc}") from None
            done = "dropped" if options["drop"] else "detached (kept as a table)"
            self.stdout.write(f"{part.name} {done}. Its hours' cost figures are now frozen.")
        if options["attach"]:
            self._attach(options["attach"])
        with connection.cursor() as cur:
            cur.execute(
                "SELECT c.relname, c.reltuples::bigint FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                [partitions.RUN_TABLE],
            )
            estimates = dict(cur.fetchall())
        for part in partitions.gpu_run_partitions():
            rows = max(estimates.get(part.name, 0), 0)
            self.stdout.write(f"{part.name:34} {part.bounds:80} ~{rows:,} rows")

    def _attach(self, month: date) -> None:
        try:
            done = partitions.gpu_run_month_attach(month=month)
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        except OperationalError as exc:  # the lock timeout: the runs were busy
            raise CommandError(f"Not attached, try again: {exc}") from None
        self.stdout.write(
            f"{done.name} attached: {done.rows:,} runs ({done.moved:,} written while it was "
            f"detached). Recomputing the cost aggregates of its {done.hours:,} hours…"
        )
        self.stdout.flush()
        hours = services.cost_aggregates_refresh()
        self.stdout.write(f"{hours:,} hours recomputed.")
