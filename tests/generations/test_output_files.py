"""A simulated job's output file (`result.url`, generations/api/output_views.py): it answers
with a placeholder of the job's output type (PNG, WAV, MP4, GLB), to the job's organization
only — by API key or by a member's session — and 404 to anyone else."""

from __future__ import annotations

import io
import wave

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from generations import services
from generations.models import Job
from tests.config.helpers import assert_problem, bearer
from tests.factories import make_ai_model, make_org

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="studio")


@pytest.fixture
def globex():
    return make_org(slug="globex", plan="studio")


def key_of(org) -> str:
    return account_services.api_key_create(organization=org, name="k", actor=None)[1]


def run_job(org, *, slug="sdxl", seed=7) -> Job:
    job, _ = services.generation_submit(
        organization=org, model_slug=slug, params={"prompt": "a cat", "seed": seed}
    )
    assert services.generation_run(job_id=job.pk) == "succeeded"
    return Job.objects.get(pk=job.pk)


@pytest.mark.parametrize(
    ("output_type", "ext", "content_type", "magic"),
    [
        ("image", "png", "image/png", b"\x89PNG\r\n\x1a\n"),
        ("audio", "wav", "audio/wav", b"RIFF"),
        ("video", "mp4", "video/mp4", b"\x00\x00\x00\x1cftypisom"),
        ("3d", "glb", "model/gltf-binary", b"glTF"),
    ],
)
def test_a_succeeded_jobs_output_link_answers_with_a_file_of_its_type(
    client, acme, output_type, ext, content_type, magic
):
    make_ai_model("m", backend_config={"mean_s": 0.01, "output_type": output_type})
    job = run_job(acme, slug="m")
    url = job.result["url"]
    assert url == f"/api/v1/generations/{job.pk}/output/{job.pk}.{ext}"  # an audio job: .wav
    response = client.get(url, **bearer(key_of(acme)))
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response.content.startswith(magic)
    assert f'filename="{job.pk}.{ext}"' in response["Content-Disposition"]
    if ext == "wav":
        with wave.open(io.BytesIO(response.content)) as w:
            assert w.getnframes() > 0


def test_a_member_fetches_it_with_the_session_of_the_web_pages(acme):
    make_ai_model("sdxl")
    job = run_job(acme)
    client = Client()
    client.force_login(acme.memberships.get().user)
    client.get(reverse("dashboard"))  # sets the active organization
    response = client.get(job.result["url"], HTTP_ACCEPT="image/avif,image/webp,*/*;q=0.8")
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    # A client asking for exactly the file's type is answered too.
    assert client.get(job.result["url"], HTTP_ACCEPT="image/png").status_code == 200


def test_only_the_jobs_organization_may_fetch_it(client, acme, globex):
    make_ai_model("sdxl")
    job = run_job(acme)
    url = job.result["url"]
    assert_problem(client.get(url, **bearer(key_of(globex))), status=404, code="not_found")
    assert client.get(url).status_code in (401, 403)
    outsider = Client()
    outsider.force_login(globex.memberships.get().user)
    outsider.get(reverse("dashboard"))
    assert outsider.get(url).status_code == 404


def test_no_file_for_another_name_or_a_job_without_output(client, acme):
    make_ai_model("sdxl")
    job = run_job(acme)
    key = key_of(acme)
    assert_problem(
        client.get(f"/api/v1/generations/{job.pk}/output/{job.pk}.wav", **bearer(key)),
        status=404,
        code="not_found",
    )
    queued, _ = services.generation_submit(
        organization=acme, model_slug="sdxl", params={"prompt": "later"}
    )
    assert_problem(
        client.get(f"/api/v1/generations/{queued.pk}/output/{queued.pk}.png", **bearer(key)),
        status=404,
        code="not_found",
    )
    assert_problem(
        client.get("/api/v1/generations/not-a-uuid/output/x.png", **bearer(key)),
        status=404,
        code="not_found",
    )
