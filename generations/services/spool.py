"""The finish spool: results a worker had in hand but could not record.

When a job's terminal transaction keeps failing on connection loss (the database is away for
longer than the finish's retries, see `execution._finish_recorded`), the worker writes the
result to a local file — one JSON file per (job, attempt) under GENERATIONS_SPOOL_DIR, written
atomically (a temporary file, fsync, rename) — and records it later: `results_drain` runs at
the start of the worker's next task and at the start of every reaper pass (before any lease is
judged lapsed). The drain calls the same idempotent finish, so a result recorded twice (two
processes draining one file, or a commit whose answer was lost) is charged once.

A spooled success still wins when the job's lease lapsed meanwhile and the job was requeued
for another attempt that has not started (`_finish(late=True)`); a newer attempt that has
started, or a job that ended otherwise, makes the spooled result stale and it is dropped.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import InterfaceError, OperationalError, connection
from django.utils.dateparse import parse_datetime

from generations.backends import BackendError, RunResult

logger = logging.getLogger(__name__)

SUFFIX = ".json"


def spool_dir() -> Path:
    return Path(settings.GENERATIONS_SPOOL_DIR)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return parse_datetime(value) if value else None


def result_keep(
    *,
    job_id,
    attempt: int,
    outcome: RunResult | None,
    error: BackendError | None,
    worker: str,
    result_at: datetime,
) -> Path:
    """Write one attempt's result to the spool (atomically: never a half-written file)."""
    record: dict[str, Any] = {
        "job_id": str(job_id),
        "attempt": attempt,
        "worker": worker,
        "result_at": _when(result_at),
    }
    if error is None:
        record["outcome"] = {
            "output": outcome.output,
            "node": outcome.node,
            "started_at": _when(outcome.started_at),
            "finished_at": _when(outcome.finished_at or result_at),
            "meta": outcome.meta,
            "units": outcome.units,
        }
    else:
        record["error"] = {
            "message": error.message,
            "code": error.code,
            "customer_fault": error.customer_fault,
            "node": error.node,
            "started_at": _when(error.started_at),
            "finished_at": _when(error.finished_at or result_at),
        }
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{job_id}-{attempt}{SUFFIX}"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(record, f, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems can't fsync a directory: the rename is still atomic
        pass
    return path


def _load(path: Path) -> tuple[dict, RunResult | None, BackendError | None]:
    record = json.loads(path.read_text(encoding="utf-8"))
    if "error" in record:
        e = record["error"]
        error = BackendError(
            e["message"],
            code=e["code"],
            customer_fault=bool(e["customer_fault"]),
            node=e.get("node", ""),
            started_at=_parse(e.get("started_at")),
            finished_at=_parse(e.get("finished_at")),
        )
        return record, None, error
    o = record["outcome"]
    outcome = RunResult(
        output=o["output"],
        node=o.get("node", ""),
        started_at=_parse(o.get("started_at")),
        finished_at=_parse(o.get("finished_at")),
        meta=o.get("meta") or {},
        units=o.get("units") or {},
    )
    return record, outcome, None


def results_pending() -> list[Path]:
    """The spooled results waiting to be recorded, oldest first."""
    try:
        paths = [p for p in spool_dir().iterdir() if p.name.endswith(SUFFIX)]
    except FileNotFoundError:
        return []

    def age(path: Path) -> tuple[float, str]:
        try:
            return path.stat().st_mtime, path.name
        except FileNotFoundError:  # drained meanwhile by another process
            return 0.0, path.name

    return sorted(paths, key=age)


def results_drain() -> dict[str, int]:
    """Record every spooled result (idempotent finish, one transaction each) and remove its
    file. Stops at the first connection error (the database is still away; the files stay).
    Never raises for a database that is away. Returns {"recorded", "stale", "kept"}."""
    from generations.services.execution import _finish

    counts = {"recorded": 0, "stale": 0, "kept": 0}
    pending = results_pending()
    for k, path in enumerate(pending):
        try:
            record, outcome, error = _load(path)
        except FileNotFoundError:
            continue  # another process drained it
        except (ValueError, KeyError, TypeError):
            logger.error("Unreadable spooled result %s: set aside as .bad", path.name)
            path.replace(path.with_name(path.name + ".bad"))
            continue
        try:
            result = _finish(
                record["job_id"],
                attempt=int(record["attempt"]),
                outcome=outcome,
                error=error,
                worker=record.get("worker", ""),
                late=True,
            )
        except ObjectDoesNotExist:
            # Not a job of this database (a spool directory shared by mistake): set aside.
            logger.error("Spooled result %s names no job here: set aside as .orphan", path.name)
            path.replace(path.with_name(path.name + ".orphan"))
            counts["stale"] += 1
            continue
        except (OperationalError, InterfaceError) as exc:
            connection.close()
            counts["kept"] = len(pending) - k
            logger.warning("Spooled results kept: the database is still unreachable (%s)", exc)
            break
        path.unlink(missing_ok=True)
        if result == "stale":
            counts["stale"] += 1
            logger.warning(
                "Spooled result of job %s attempt %s dropped: the job moved on",
                record["job_id"],
                record["attempt"],
            )
        else:
            counts["recorded"] += 1
            logger.info(
                "Spooled result of job %s attempt %s recorded: %s",
                record["job_id"],
                record["attempt"],
                result,
            )
    return counts


def results_drain_safe() -> None:
    """`results_drain` when anything is spooled; never fails the caller (the worker's next
    task and the reaper call it first)."""
    try:
        if results_pending():
            results_drain()
    except Exception:  # the spool is a safety net: a broken one must not stop new work
        logger.exception("Draining the finish spool failed")
