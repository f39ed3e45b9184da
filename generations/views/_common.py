"""How a job reads on the web pages (status text, step, polling pace, durations, charge, result
preview), computed once per job and shared by the generate page, the job pages and the history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from config.web.formats import format_credits
from generations.models import Job, JobStatus
from generations.services.submission import job_seed_drawn

POLL_FAST_S = 1
POLL_SLOW_S = 5
POLL_FAST_FOR = timedelta(minutes=2)  # after that a job still waiting is polled less often


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def generate_url(**params) -> str:
    """The generate page with these query parameters (the empty ones left out)."""
    query = urlencode({k: v for k, v in params.items() if v})
    return reverse("generations:generate") + (f"?{query}" if query else "")


STEPS = ("queued", "running", "done")
STATUS_TEXT = {
    JobStatus.QUEUED: "Waiting for a GPU",
    JobStatus.RUNNING: "Generating",
    JobStatus.SUCCEEDED: "Done",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
}


@dataclass(frozen=True)
class JobView:
    """A job with what the templates show about it, computed once."""

    job: Job
    status_text: str
    step: int  # 0 queued, 1 running, 2 finished
    polling: bool
    poll_every: int
    wait_text: str
    run_text: str
    elapsed_text: str
    charged_text: str
    charge_note: str
    result_items: list[tuple[str, str]]
    result_json: str
    preview_type: str
    preview_label: str
    preview_hue: int
    gpu_type: str
    ran: bool  # it started on a node (a job cancelled or failed in the queue never did)
    seed: int | None  # the seed it runs with, when it has one
    seed_drawn: bool  # drawn at random at submission (the request had none)

    @property
    def cancellable(self) -> bool:
        return self.job.status == JobStatus.QUEUED

    @property
    def detail_url(self) -> str:
        return reverse("generations:job", args=[self.job.pk])

    @property
    def generate_url(self) -> str:
        """The generate page showing this job, its form filled with the job's settings (a
        random seed left empty: the next press draws a new one)."""
        return generate_url(model=self.job.model.slug, job=str(self.job.pk))

    @property
    def again_url(self) -> str:
        """The generate page filled with this job's settings and its seed, even a random one:
        the same settings again give the same result."""
        seed = "" if self.seed is None else str(self.seed)
        return generate_url(
            model=self.job.model.slug, job=str(self.job.pk), **{"params-seed": seed}
        )

    @property
    def running_step(self) -> str:
        """The "Running" step's state: done, current, skipped (ended without running) or ""."""
        if self.step == 1:
            return "current"
        if self.step == 2:
            return "done" if self.ran else "skipped"
        return ""


def job_view(job: Job, *, now: datetime | None = None) -> JobView:
    now = now or timezone.now()
    status = job.status
    terminal = job.is_terminal
    if status == JobStatus.QUEUED:
        step = 0
    elif status == JobStatus.RUNNING:
        step = 1
    else:
        step = 2
    wait = between(job.created_at, job.started_at)
    if wait is None and not terminal:
        wait = between(job.created_at, now)
    run = between(job.started_at, job.finished_at)
    elapsed = between(job.started_at, now) if status == JobStatus.RUNNING else None

    held = job.credits_held
    charged = job.credits_charged
    if status == JobStatus.SUCCEEDED:
        charged_text = format_credits(charged)
        charge_note = "captured from the hold" if not job.cached else "served from the cache"
        if charged is not None and held and charged < held:
            # The price follows the params and the GPU produced fewer units than asked.
            charge_note = (
                f"for what was produced; {format_credits(held - charged)} of the hold released"
            )
    elif terminal:
        charged_text = format_credits(charged or Decimal(0))
        if charged:
            charge_note = "the request caused the failure"
        elif held:
            charge_note = f"{format_credits(held)} released back to you"
        else:
            charge_note = ""
    else:
        charged_text = "—"
        charge_note = "only if it succeeds"

    result = job.result
    items: list[tuple[str, str]] = []
    result_json = ""
    preview_type = preview_label = ""
    hue = 210
    if isinstance(result, dict):
        preview_type = str(result.get("type") or "output")
        labels = {
            "type": "Type",
            "seed": "Seed",
            "service_time_s": "GPU time",
            "cold_start_s": "Cold start",
            "url": "Output",
        }
        for key, label in labels.items():
            if key not in result:
                continue
            value = result[key]
            if key.endswith("_s") and isinstance(value, int | float):
                value = duration(float(value))
            items.append((label, str(value)))
        for key, value in result.items():
            if key not in labels:
                items.append((key.replace("_", " ").capitalize(), str(value)))
        seed = result.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool):
            hue = (seed * 137) % 360
        preview_label = f"Placeholder for the {preview_type} output" + (
            f", seed {seed}" if seed is not None else ""
        )
    elif result is not None:
        result_json = json.dumps(result, indent=2, ensure_ascii=False)

    age = now - job.created_at
    seed = (job.params or {}).get("seed") if isinstance(job.params, dict) else None
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = None
    return JobView(
        job=job,
        status_text=STATUS_TEXT.get(status, status),
        step=step,
        polling=not terminal,
        poll_every=POLL_FAST_S if age < POLL_FAST_FOR else POLL_SLOW_S,
        wait_text=duration(wait),
        run_text=duration(run),
        elapsed_text=duration(elapsed),
        charged_text=charged_text,
        charge_note=charge_note,
        result_items=items,
        result_json=result_json,
        preview_type=preview_type,
        preview_label=preview_label,
        preview_hue=hue,
        gpu_type=(job.model.pool.gpu_type if job.model.pool_id else ""),
        ran=job.started_at is not None or bool(job.node),
        seed=seed,
        seed_drawn=seed is not None and job_seed_drawn(job),
    )
