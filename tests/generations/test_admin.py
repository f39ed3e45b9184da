"""Django admin for generations: prices change only as new versions through the service (with
the acting admin, a reason and an audit event), rates and jobs are read-only, and the cancel
action releases holds through the service."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent, User
from credits.models import EntryKind, HoldStatus, LedgerEntry
from generations import selectors, services
from generations.models import AIModel, CreditRate, Job, JobEvent, JobStatus
from tests.factories import account_of, make_ai_model, make_org, make_pool

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("instant_backend")]


@pytest.fixture
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


def url(model, view, *args):
    return reverse(f"admin:generations_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def superuser():
    return User.objects.create_superuser(email="root@example.com", password="pw-root-123")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def sdxl():
    return make_ai_model("sdxl", credits="5", description="Images")


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="studio")


def submit(org, prompt="a cat", **kw):
    return services.generation_submit(
        organization=org, model_slug="sdxl", params={"prompt": prompt}, **kw
    )[0]


def model_form(model: AIModel, **changes) -> dict:
    """The AI model change form as the browser posts it (the read-only price inline sends an
    empty management form)."""
    data = {
        "slug": model.slug,
        "name": model.name,
        "description": model.description,
        "is_active": "on" if model.is_active else "",
        "cache_price_credits": str(model.cache_price_credits),
        "pool": str(model.pool_id or ""),
        "backend": model.backend,
        "backend_config": json.dumps(model.backend_config),
        "max_runtime_s": str(model.max_runtime_s),
        "params_schema": json.dumps(model.params_schema),
        "external_cost_usd": str(model.external_cost_usd),
        "new_price": "",
        "price_reason": "",
        "rates-TOTAL_FORMS": "0",
        "rates-INITIAL_FORMS": "0",
        "rates-MIN_NUM_FORMS": "0",
        "rates-MAX_NUM_FORMS": "0",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != "" or k in ("new_price", "price_reason")}


def test_everything_is_registered():
    for model in (AIModel, CreditRate, Job):
        assert admin.site.is_registered(model)


def test_pages_load(staff_client, acme, sdxl):
    job = submit(acme)
    rate = sdxl.rates.get()
    for page in (
        url(AIModel, "changelist"),
        url(AIModel, "change", sdxl.pk),
        url(AIModel, "add"),
        url(CreditRate, "changelist"),
        url(CreditRate, "change", rate.pk),
        url(CreditRate, "add"),
        url(Job, "changelist"),
        url(Job, "change", job.pk),
    ):
        response = staff_client.get(page)
        assert response.status_code == 200, page


# --- Models and prices --------------------------------------------------------------------------


def test_model_list_shows_the_current_price_and_searches_and_filters(staff_client, sdxl):
    make_ai_model("flux", credits="2.5", external_cost_usd=D("0.01"))
    services.rate_set(model=sdxl, credits="6.25", reason="up", actor=None)
    response = staff_client.get(url(AIModel, "changelist"))
    content = response.content.decode()
    assert "6.250" in content and "2.500" in content
    assert list(response.context["cl"].result_list) == list(AIModel.objects.order_by("slug"))
    found = staff_client.get(url(AIModel, "changelist"), {"q": "flux"}).context["cl"].result_list
    assert [m.slug for m in found] == ["flux"]
    inactive = staff_client.get(url(AIModel, "changelist"), {"is_active__exact": "0"})
    assert list(inactive.context["cl"].result_list) == []


def test_setting_a_new_price_creates_a_version_with_who_and_why(staff_client, superuser, sdxl):
    response = staff_client.post(
        url(AIModel, "change", sdxl.pk),
        model_form(sdxl, new_price="7.5", price_reason="GPU prices went up"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert sdxl.rates.count() == 2
    rate = selectors.rate_current(model=sdxl)
    assert (rate.credits, rate.set_by, rate.reason) == (D("7.5"), superuser, "GPU prices went up")
    old = sdxl.rates.order_by("effective_from").first()
    assert (old.credits, old.reason) == (D(5), "test price")  # history is kept
    event = AuditEvent.objects.get(action="credit_rate.set")
    assert (event.actor, event.target_id) == (superuser, str(rate.pk))
    assert (event.data["from"], event.data["to"], event.data["reason"]) == (
        "5.000",
        "7.500",
        "GPU prices went up",
    )
    history = staff_client.get(url(AIModel, "change", sdxl.pk)).content.decode()
    assert "GPU prices went up" in history and "test price" in history


def test_jobs_accepted_before_a_price_change_keep_their_price(staff_client, acme, sdxl):
    job = submit(acme)
    staff_client.post(
        url(AIModel, "change", sdxl.pk), model_form(sdxl, new_price="9", price_reason="up")
    )
    services.generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.credits_charged == D(5)
    assert submit(acme, prompt="later").credits_held == D(9)


def test_editing_a_model_without_a_new_price_keeps_the_price(staff_client, sdxl):
    response = staff_client.post(url(AIModel, "change", sdxl.pk), model_form(sdxl, name="SDXL 1.0"))
    assert response.status_code == 302
    sdxl.refresh_from_db()
    assert sdxl.name == "SDXL 1.0"
    assert sdxl.rates.count() == 1
    assert not AuditEvent.objects.filter(action="credit_rate.set").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"new_price": "7", "price_reason": ""}, "price_reason"),
        ({"new_price": "", "price_reason": "because"}, "new_price"),
        ({"new_price": "0", "price_reason": "free"}, "new_price"),
        ({"new_price": "-1", "price_reason": "why"}, "new_price"),
        ({"new_price": "1.0001", "price_reason": "why"}, "new_price"),
        ({"params_schema": '{"type": "nonsense"}'}, "params_schema"),
    ],
)
def test_bad_price_changes_are_refused_and_change_nothing(staff_client, sdxl, changes, field):
    response = staff_client.post(url(AIModel, "change", sdxl.pk), model_form(sdxl, **changes))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert sdxl.rates.count() == 1
    assert not AuditEvent.objects.filter(action="credit_rate.set").exists()


def test_adding_a_model_sets_its_first_price_through_the_service(staff_client, superuser):
    pool = make_pool("l4", gpu_type="L4")
    draft = AIModel(slug="flux", name="Flux", pool=pool)
    data = model_form(draft, new_price="3", price_reason="launch price")
    response = staff_client.post(url(AIModel, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    model = AIModel.objects.get(slug="flux")
    rate = selectors.rate_current(model=model)
    assert (rate.credits, rate.set_by, rate.reason) == (D(3), superuser, "launch price")
    # An active model without a price is refused.
    missing = staff_client.post(
        url(AIModel, "add"), model_form(AIModel(slug="x", name="X", pool=pool))
    )
    assert "new_price" in missing.context["adminform"].form.errors
    assert not AIModel.objects.filter(slug="x").exists()


def test_models_cannot_be_deleted(staff_client, sdxl):
    assert staff_client.get(url(AIModel, "delete", sdxl.pk)).status_code == 403


def test_credit_rates_are_never_edited_or_deleted(staff_client, sdxl):
    rate = sdxl.rates.get()
    page = staff_client.get(url(CreditRate, "change", rate.pk))
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert '<input type="text" name="credits"' not in page.content.decode()
    response = staff_client.post(
        url(CreditRate, "change", rate.pk),
        {"model": sdxl.pk, "credits": "1", "reason": "sneaky"},
    )
    assert response.status_code == 403
    assert staff_client.get(url(CreditRate, "delete", rate.pk)).status_code == 403
    rate.refresh_from_db()
    assert (rate.credits, rate.reason) == (D(5), "test price")
    # No bulk delete either.
    action_form = staff_client.get(url(CreditRate, "changelist")).context["action_form"]
    assert action_form is None or "delete_selected" not in dict(
        action_form.fields["action"].choices
    )


@pytest.mark.parametrize("new_price", ["50.001", "0.49"])
def test_a_price_change_of_more_than_ten_times_asks_to_confirm(staff_client, sdxl, new_price):
    sdxl.name = "Stable Diffusion XL"
    sdxl.save(update_fields=["name"])
    form = model_form(sdxl, new_price=new_price, price_reason="typo?")

    refused = staff_client.post(url(AIModel, "change", sdxl.pk), form)

    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert "confirm_large_change" in errors
    assert "Stable Diffusion XL" in errors["confirm_large_change"][0]
    assert "current 5" in errors["confirm_large_change"][0]
    assert sdxl.rates.count() == 1
    assert not AuditEvent.objects.filter(action="credit_rate.set").exists()

    confirmed = staff_client.post(
        url(AIModel, "change", sdxl.pk), {**form, "confirm_large_change": "on"}, follow=True
    )

    assert confirmed.status_code == 200
    assert selectors.rate_current(model=sdxl).credits == D(new_price)
    # The message names the model by its name, not its slug.
    notes = [str(m) for m in confirmed.context["messages"]]
    assert any(n.startswith("Stable Diffusion XL now costs") for n in notes), notes


def test_a_price_change_within_ten_times_needs_no_confirmation(staff_client, sdxl):
    response = staff_client.post(
        url(AIModel, "change", sdxl.pk), model_form(sdxl, new_price="50", price_reason="10x")
    )
    assert response.status_code == 302
    assert selectors.rate_current(model=sdxl).credits == D(50)


def test_adding_a_rate_of_more_than_ten_times_asks_to_confirm(staff_client, sdxl):
    data = {"model": sdxl.pk, "credits": "500", "reason": "oops"}
    refused = staff_client.post(url(CreditRate, "add"), data)
    assert refused.status_code == 200
    assert "confirm_large_change" in refused.context["adminform"].form.errors
    assert sdxl.rates.count() == 1
    confirmed = staff_client.post(url(CreditRate, "add"), {**data, "confirm_large_change": "on"})
    assert confirmed.status_code == 302
    assert selectors.rate_current(model=sdxl).credits == D(500)


def test_price_versions_read_by_the_models_name(staff_client, sdxl):
    sdxl.name = "Stable Diffusion XL"
    sdxl.save(update_fields=["name"])
    rate = sdxl.rates.get()
    assert str(rate).startswith("Stable Diffusion XL: ")
    page = staff_client.get(url(CreditRate, "change", rate.pk)).content.decode()
    assert "Stable Diffusion XL" in page


def test_adding_a_credit_rate_goes_through_the_service(staff_client, superuser, sdxl):
    response = staff_client.post(
        url(CreditRate, "add"), {"model": sdxl.pk, "credits": "4.5", "reason": "promo"}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rate = selectors.rate_current(model=sdxl)
    assert (rate.credits, rate.set_by, rate.reason) == (D("4.5"), superuser, "promo")
    assert AuditEvent.objects.filter(action="credit_rate.set", target_id=str(rate.pk)).exists()


def test_a_future_rate_can_be_scheduled_but_history_is_never_rewritten(staff_client, sdxl):
    future = timezone.localtime() + timedelta(days=7)
    past = timezone.localtime() - timedelta(days=7)
    for moment, ok in ((future, True), (past, False)):
        response = staff_client.post(
            url(CreditRate, "add"),
            {
                "model": sdxl.pk,
                "credits": "8",
                "reason": "scheduled",
                "effective_from_0": moment.strftime("%Y-%m-%d"),
                "effective_from_1": moment.strftime("%H:%M:%S"),
            },
        )
        assert (response.status_code == 302) is ok
    assert sdxl.rates.count() == 2
    assert selectors.rate_current(model=sdxl).credits == D(5)  # not yet in force
    later = timezone.now() + timedelta(days=8)
    assert selectors.rate_current(model=sdxl, now=later).credits == D(8)


# --- Jobs ---------------------------------------------------------------------------------------


def test_jobs_are_read_only_with_their_status_log(staff_client, acme, sdxl):
    job = submit(acme)
    services.generation_run(job_id=job.pk)
    page = staff_client.get(url(Job, "change", job.pk))
    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    content = page.content.decode()
    assert "status log" in content.lower()
    events = list(JobEvent.objects.filter(job=job).order_by("at", "id"))
    assert [e.status for e in events] == ["queued", "running", "succeeded"]
    positions = [content.index(e.message) for e in events]
    assert positions == sorted(positions)  # in time order
    response = staff_client.post(url(Job, "change", job.pk), {"status": "queued"})
    assert response.status_code == 403
    assert staff_client.get(url(Job, "add")).status_code == 403
    assert staff_client.get(url(Job, "delete", job.pk)).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_job_list_filters_and_search(staff_client, acme, sdxl):
    globex = make_org(slug="globex", plan="studio")
    mine = submit(acme, idempotency_key="order-42")
    theirs = submit(globex)
    services.generation_run(job_id=theirs.pk)

    def listed(**query):
        response = staff_client.get(url(Job, "changelist"), query)
        assert response.status_code == 200
        return {j.pk for j in response.context["cl"].result_list}

    assert listed() == {mine.pk, theirs.pk}
    assert listed(status__exact="succeeded") == {theirs.pk}
    assert listed(cached__exact="0") == {mine.pk, theirs.pk}
    assert listed(model__id__exact=str(sdxl.pk)) == {mine.pk, theirs.pk}
    assert listed(q=str(mine.pk)) == {mine.pk}
    assert listed(q="globex") == {theirs.pk}
    assert listed(q="order-42") == {mine.pk}
    assert listed(q="nothing-like-this") == set()


def test_cancel_action_cancels_queued_jobs_and_releases_their_holds(
    staff_client, superuser, acme, sdxl
):
    queued = [submit(acme, prompt=f"cat {i}") for i in range(2)]
    done = submit(acme, prompt="done")
    services.generation_run(job_id=done.pk)
    assert account_of(acme).held == D(10)
    response = staff_client.post(
        url(Job, "changelist"),
        {
            "action": "cancel_selected",
            "_selected_action": [str(j.pk) for j in [*queued, done]],
        },
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any("Cancelled 2 job(s)" in m for m in messages), messages
    assert any("Skipped 1 job(s)" in m for m in messages), messages
    for job in queued:
        job.refresh_from_db()
        assert (job.status, job.credits_charged) == (JobStatus.CANCELLED, 0)
        assert job.hold.status == HoldStatus.RELEASED
        entry = LedgerEntry.objects.get(hold=job.hold, kind=EntryKind.RELEASE)
        assert entry.actor == superuser
        assert AuditEvent.objects.filter(
            action="generation.cancelled", target_id=str(job.pk), actor=superuser
        ).exists()
    done.refresh_from_db()
    assert done.status == JobStatus.SUCCEEDED
    assert account_of(acme).held == 0
    # Again: nothing more happens.
    staff_client.post(
        url(Job, "changelist"),
        {"action": "cancel_selected", "_selected_action": [str(j.pk) for j in queued]},
    )
    assert LedgerEntry.objects.filter(kind=EntryKind.RELEASE).count() == 2


def test_staff_without_change_permission_cannot_cancel(client, acme, sdxl):
    from django.contrib.auth.models import Permission

    viewer = User.objects.create_user(email="viewer@example.com", password="pw-view-123")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    job = submit(acme)
    page = client.get(url(Job, "changelist"))
    assert page.status_code == 200
    assert "cancel_selected" not in page.content.decode()
    client.post(
        url(Job, "changelist"), {"action": "cancel_selected", "_selected_action": [str(job.pk)]}
    )
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
