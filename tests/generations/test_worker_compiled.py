"""The worker's path compiles few ORM statements (issue 16): the claim's and the finish's
row-locking SELECTs (generations.services.execution_lookup), the job's UPDATE
(events.job_save_with_event), the webhook lookup (accounts.webhooks `_subscribed`) and the GPU
run's end (infra_costs.services.gpu_run_finish) are fixed statements: compiling them with the
ORM cost more CPU than running them. Pinned here as the SQL compilations during one
`generation_run` of a simple succeeded job (7 before; the hold's expiry, credits', may be
one)."""

from __future__ import annotations

from functools import partial

import pytest

from generations import services
from generations.models import JobStatus
from tests.factories import make_ai_model, make_org

pytestmark = pytest.mark.django_db


def test_a_succeeded_run_compiles_a_pinned_number_of_statements(settings, compiled):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0
    org = make_org(plan="studio")
    make_ai_model(credits="4", backend_config={"mean_s": 0.01, "nodes": 1})
    submit = partial(services.generation_submit, organization=org, model_slug="sdxl")
    first, _ = submit(params={"prompt": "a dog"})
    assert services.generation_run(job_id=first.pk) == "succeeded"  # records the node
    job, _ = submit(params={"prompt": "a cat"})
    compiled.clear()
    assert services.generation_run(job_id=job.pk) == "succeeded"
    during = list(compiled)
    # Before: 6 (the claim's and the finish's SELECTs, the job's UPDATE twice, the webhook
    # lookup, the GPU run's UPDATE) plus the hold's expiry.
    assert not [c for c in during if c.endswith((":Job", ":WebhookEndpoint", ":GpuRun"))], during
    assert len(during) <= 2, during
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
