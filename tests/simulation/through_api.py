"""Some seeds submit and cancel through the HTTP API instead of calling the services: the DRF
view, its serializer, authentication with an API key, the throttle and the error handler run
too, under the same faults. Every answer must be a success or a problem+json with a code —
never a 500 (a lost connection answers 503 `server_busy`).

Which seeds go through HTTP is drawn from a random generator of their own, so the seeds that
don't are exactly what they were, and so is the seed's own stream of choices: an HTTP seed
draws what a service seed draws (the job ids, the params' seed), then posts them.
"""

from __future__ import annotations

import json
import random

from accounts import services as account_services

HTTP_SHARE = 0.1  # about one seed in ten
GENERATIONS = "/api/v1/generations/"


def drives_http(seed: int) -> bool:
    return random.Random(f"http-{seed}").random() < HTTP_SHARE


class HttpDriver:
    """The API as a customer sees it, one API key per organization (created inside the seed's
    savepoint: the throttle's counts start afresh with each seed)."""

    def __init__(self, sim):
        from rest_framework.test import APIClient

        self.sim = sim
        self.client = APIClient(raise_request_exception=False)
        self.keys: dict = {}

    def _headers(self, organization) -> dict:
        key = self.keys.get(organization.pk)
        if key is None:
            key = account_services.api_key_create(
                organization=organization, name="simulation", actor=None
            )[1]
            self.keys[organization.pk] = key
        return {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    def _answer(self, what: str, response) -> dict | None:
        """The body of a success; None (logged) for a problem. A 5xx other than 503, or an
        error that is not problem+json, is a bug."""
        status = response.status_code
        if status < 300:
            return response.json()
        problem = response.get("Content-Type") == "application/problem+json"
        code = str(response.json().get("code") or "") if problem else ""
        self.sim.log(f"{what} answered {status} {code or response.get('Content-Type')}")
        if (status >= 500 and status != 503) or not problem or not code:
            self.sim.crashes.append(f"{what} answered {status} ({code or 'not problem+json'})")
        return None

    def submit(self, *, organization, model_slug: str, params: dict, idempotency_key: str):
        body = {"model": model_slug, "params": params}
        response = self.client.post(
            GENERATIONS,
            data=json.dumps(body),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=idempotency_key,
            **self._headers(organization),
        )
        data = self._answer("POST /generations/", response)
        return None if data is None else data["id"]

    def cancel(self, *, organization, job_id: str) -> bool:
        response = self.client.post(f"{GENERATIONS}{job_id}/cancel/", **self._headers(organization))
        return self._answer("POST /generations/{id}/cancel/", response) is not None
