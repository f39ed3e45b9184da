"""The staff contracts page (/staff/contracts/) and the contract terms and entitlements on the
billing page: staff only, CSRF, a bad form writes nothing, owners/admins see their terms
read-only, members do not, and every customer sees what each plan includes."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.test import Client
from django.utils import timezone

from accounts.contracts.models import Contract
from accounts.models import Plan, Role, User
from credits.services import contract_change
from generations.models import PriceOverride
from tests.factories import account_of, add_member, make_ai_model, make_org

pytestmark = pytest.mark.django_db

URL = "/staff/contracts/"
BILLING = "/credits/billing/"


@pytest.fixture
def staff():
    return User.objects.create_user(email="am@example.com", password="pw-am-12345", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def acme():
    return make_org(slug="acme", plan="enterprise")


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_anonymous_visitors_log_in_and_customers_get_404(client, acme):
    assert client.get(URL).status_code == 302
    client.force_login(acme.memberships.get().user)
    assert client.get(URL).status_code == 404
    assert client.post(f"{URL}contract/", {"organization": "acme"}).status_code == 404
    assert not Contract.objects.exists()


def test_staff_set_a_contract_and_an_override_and_the_page_lists_them(staff_client, acme, staff):
    make_ai_model("sdxl", credits="5")
    response = staff_client.post(
        f"{URL}contract/",
        {
            "organization": "acme",
            "credits_per_period": "12000",
            "overage_cap": "3000",
            "overage_price_usd": "0.0035",
            "notes": "Net 30",
            "reason": "signed 2026 MSA",
        },
    )
    assert response.status_code == 302
    contract = Contract.objects.get()
    assert (contract.version, contract.created_by, contract.reason) == (1, staff, "signed 2026 MSA")
    account = account_of(acme)
    assert account.overage_limit == D(3000)  # applied at once
    response = staff_client.post(
        f"{URL}override/",
        {"organization": "acme", "model": "sdxl", "discount_percent": "15", "reason": "volume"},
    )
    assert response.status_code == 302
    assert PriceOverride.objects.get().created_by == staff
    page = text(staff_client.get(URL))
    assert "Acme" in page and "v1" in page and "12,000" in page
    assert "sdxl : 15% off" in page and "volume" in page


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("contract/", {"organization": "nobody", "reason": "x"}),
        ("contract/", {"organization": "acme", "reason": ""}),
        ("contract/", {"organization": "acme", "reason": "x", "overage_cap": "-5"}),
        ("override/", {"organization": "acme", "model": "nope", "credits": "2", "reason": "x"}),
        (
            "override/",
            {"organization": "acme", "credits": "2", "discount_percent": "5", "reason": "x"},
        ),
        ("override/", {"organization": "acme", "discount_percent": "101", "reason": "x"}),
    ],
)
def test_a_bad_form_answers_400_and_writes_nothing(staff_client, acme, path, data):
    response = staff_client.post(f"{URL}{path}", data)
    assert response.status_code == 400
    assert "Nothing saved" in text(response)
    assert not Contract.objects.exists() and not PriceOverride.objects.exists()


def test_posts_need_the_csrf_token(staff, acme):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(f"{URL}contract/", {"organization": "acme", "reason": "x"})
    assert response.status_code == 403
    assert not Contract.objects.exists()


def test_owners_see_their_contract_terms_read_only_and_members_do_not(client, acme, staff):
    contract_change(
        organization=acme, actor=staff, reason="signed", starts_at=timezone.now() - timedelta(1),
        credits_per_period="12000", overage_cap="3000", overage_price_usd="0.0035",
        notes="Net 30",
    )  # fmt: skip
    client.force_login(acme.memberships.get().user)
    page = text(client.get(BILLING))
    assert "Your contract" in page and "In force" in page and "12,000" in page
    assert "Net 30" in page
    member = add_member(acme, role=Role.MEMBER).user
    other = Client()
    other.force_login(member)
    assert "Your contract" not in text(other.get(BILLING))


def test_the_billing_page_compares_what_each_plan_includes(client, acme):
    Plan.objects.filter(slug="free").update(max_batch_size=1, models_allowed=["sdxl"])
    owner = make_org(slug="tiny", plan="free").memberships.get().user
    client.force_login(owner)
    page = client.get(BILLING).content.decode()
    table = page[page.index('data-testid="entitlements-table"') :]
    table = text_of(table[: table.index("</table>")])
    assert "Max batch" in table and "1 images" in table and "All models" in table
    assert "sdxl" in table


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_admin_adds_versions_through_the_services_and_never_edits_one(client, acme):
    admin_user = User.objects.create_superuser(email="root@example.com", password="pw-root-123")
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/contract/add/",
        {
            "organization": acme.pk,
            "starts_at_0": "2026-01-01",
            "starts_at_1": "00:00:00",
            "credits_per_period": "5000",
            "overage_cap": "100",
            "reason": "signed in the admin",
        },
    )
    assert response.status_code == 302, response.content
    contract = Contract.objects.get()
    assert (contract.version, contract.created_by) == (1, admin_user)
    assert account_of(acme).overage_limit == D(100)  # through credits.services.contract_change
    change = client.get(f"/admin/accounts/contract/{contract.pk}/change/")
    assert change.status_code == 200 and b'name="credits_per_period"' not in change.content
    assert client.post(f"/admin/accounts/contract/{contract.pk}/delete/").status_code == 403


def test_the_plan_admin_refuses_a_models_allowed_that_is_not_a_list_of_slugs(client):
    from django.core.exceptions import ValidationError as DjangoValidationError

    from tests.factories import ensure_default_plans

    ensure_default_plans()
    plan = Plan.objects.get(slug="starter")
    plan.models_allowed = "sdxl"
    with pytest.raises(DjangoValidationError):
        plan.full_clean()
    plan.models_allowed = ["sdxl"]
    plan.full_clean()


def test_the_generate_page_says_what_the_plan_does_not_include_and_links_to_plans(client):
    import uuid

    from credits.models import CreditHold
    from generations.models import Job

    org = make_org(slug="tiny", plan="starter")
    make_ai_model("flux", name="Flux", credits="5")
    Plan.objects.filter(slug="starter").update(models_allowed=["sdxl"])
    client.force_login(org.memberships.get().user)
    client.get("/")
    response = client.post(
        "/generate/",
        {"model": "flux", "form_token": str(uuid.uuid4()), "params-prompt": "a fox"},
    )
    assert response.status_code == 403
    page = text(response)
    assert "Not included in your plan" in page and "Compare plans" in page
    assert "/credits/billing/#entitlements" in response.content.decode()
    assert not Job.objects.exists() and not CreditHold.objects.exists()
