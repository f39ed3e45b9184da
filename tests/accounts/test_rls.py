"""PostgreSQL row-level security on the tenant tables (accounts/migrations/0006, accounts.tenancy).

Inside a tenant's scope an UNSCOPED ORM query sees only that tenant's rows and cannot write
another tenant's; outside it (staff, workers, maintenance) everything is visible; the scope
never outlives its block or its transaction, so nothing leaks to the next user of a connection.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import DatabaseError, connection, transaction

from accounts import services as account_services
from accounts.models import APIKey, AuditEvent, Membership, Organization
from accounts.tenancy import TENANT_ROLE, current_tenant, staff_scope, tenant_scope
from credits.models import CreditAccount, CreditGrant, CreditHold, LedgerEntry
from generations import services
from generations.models import Job, JobEvent
from tests.factories import add_member, make_ai_model, make_org

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def instant_backend(settings):
    settings.GENERATIONS_SIMULATED_SPEEDUP = 0


@pytest.fixture
def tenants():
    make_ai_model("sdxl", credits="5")
    acme, globex = make_org(slug="acme"), make_org(slug="globex")
    for org in (acme, globex):
        services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": "a lighthouse", "seed": 1}
        )
    return acme, globex


def db_user() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


TENANT_MODELS = [Job, JobEvent, CreditAccount, CreditGrant, CreditHold, LedgerEntry, APIKey]


def org_ids(model) -> set[int]:
    """The organizations owning the visible rows of `model`, by an unscoped query."""
    path = {
        Job: "organization_id",
        JobEvent: "job__organization_id",
        CreditAccount: "organization_id",
        CreditGrant: "account__organization_id",
        CreditHold: "account__organization_id",
        LedgerEntry: "account__organization_id",
        APIKey: "organization_id",
        AuditEvent: "organization_id",
        Membership: "organization_id",
    }[model]
    return set(model.objects.values_list(path, flat=True))


def test_unscoped_queries_inside_a_tenant_scope_see_only_that_tenants_rows(tenants):
    acme, globex = tenants
    for org in (acme, globex):
        account_services.api_key_create(organization=org, name="k", actor=None)

    with tenant_scope(acme.pk):
        assert {job.organization_id for job in Job.objects.all()} == {acme.pk}
        assert [a.organization_id for a in CreditAccount.objects.all()] == [acme.pk]
        for model in TENANT_MODELS:
            assert org_ids(model) == {acme.pk}, model.__name__
        assert Job.objects.filter(organization=globex).count() == 0
        assert current_tenant() == acme.pk
        assert db_user() == TENANT_ROLE

    for model in TENANT_MODELS:  # staff / maintenance: the connection's own role, unrestricted
        assert org_ids(model) == {acme.pk, globex.pk}, model.__name__


def test_another_tenants_rows_cannot_be_changed_or_created_inside_a_scope(tenants):
    acme, globex = tenants
    theirs = Job.objects.get(organization=globex)

    with tenant_scope(acme.pk):
        assert Job.objects.filter(pk=theirs.pk).update(error="tampered") == 0
        assert CreditAccount.objects.filter(organization=globex).delete()[0] == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            account_services.api_key_create(organization=globex, name="x", actor=None)

    theirs.refresh_from_db()
    assert theirs.error != "tampered"
    assert not APIKey.objects.filter(organization=globex, name="x").exists()


def test_memberships_and_organizations_are_limited_to_the_tenant_and_the_user(tenants):
    acme, globex = tenants
    initech = make_org(slug="initech")
    user = add_member(acme).user
    add_member(globex, user=user)

    expected = {  # all of acme's members, and the user's own membership elsewhere
        (m.organization_id, m.user_id)
        for m in Membership.objects.all()
        if m.organization_id == acme.pk or m.user_id == user.pk
    }

    with tenant_scope(acme.pk, user_id=user.pk):
        # the org switcher still lists every organization of the user, and no other
        assert set(Organization.objects.values_list("slug", flat=True)) == {"acme", "globex"}
        assert set(Membership.objects.values_list("organization_id", "user_id")) == expected
    with tenant_scope(acme.pk):  # an API key: no user, only the organization
        assert list(Organization.objects.values_list("slug", flat=True)) == ["acme"]
    assert initech.pk in set(Organization.objects.values_list("pk", flat=True))


def test_tenant_role_without_an_organization_sees_nothing(tenants):
    """Fail closed: the tenant role with no (or a reset, empty) organization setting."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {TENANT_ROLE}")
        assert Job.objects.count() == 0
        cursor.execute("SET LOCAL app.organization_id = ''")
        assert CreditAccount.objects.count() == 0
        cursor.execute("RESET ROLE")


def test_the_scope_ends_with_its_block_inside_an_outer_transaction(tenants):
    acme, _ = tenants
    user = db_user()
    with transaction.atomic():
        with tenant_scope(acme.pk):
            assert Job.objects.count() == 1
        assert db_user() == user
        assert current_tenant() is None
        assert Job.objects.count() == 2


def test_the_scope_is_undone_when_its_block_raises(tenants):
    acme, _ = tenants
    user = db_user()
    with pytest.raises(RuntimeError), tenant_scope(acme.pk):
        assert Job.objects.count() == 1
        raise RuntimeError("boom")
    assert db_user() == user
    assert Job.objects.count() == 2


def test_staff_scope_inside_a_tenant_scope_is_explicit_and_temporary(tenants):
    acme, _ = tenants
    with tenant_scope(acme.pk):
        with staff_scope():
            assert Job.objects.count() == 2
            assert current_tenant() is None
        assert Job.objects.count() == 1
        assert current_tenant() == acme.pk


def test_nested_tenant_scopes_restore_the_outer_one(tenants):
    acme, globex = tenants
    with tenant_scope(acme.pk):
        with tenant_scope(globex.pk):
            assert org_ids(Job) == {globex.pk}
        assert org_ids(Job) == {acme.pk}


def test_every_table_keyed_by_organization_or_account_has_row_level_security():
    """A new tenant table must get its policy (a migration like accounts 0006)."""
    tenant_keys = {Organization, CreditAccount}
    tables = {
        model._meta.db_table
        for model in apps.get_models()
        if any(
            field.concrete and field.is_relation and field.related_model in tenant_keys
            for field in model._meta.get_fields()
        )
    } | {Organization._meta.db_table, JobEvent._meta.db_table}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid "
            "WHERE c.relrowsecurity AND p.polname = 'tenant_isolation'"
        )
        protected = {row[0] for row in cursor.fetchall()}
    assert tables - protected == set()


@pytest.mark.django_db(transaction=True)
def test_nothing_leaks_to_the_next_transaction_on_the_same_connection():
    """Committed tenant scope (the outermost transaction, as in a request with autocommit):
    the next transaction on the same persistent connection is unrestricted again."""
    make_ai_model("sdxl", credits="5")
    acme, globex = make_org(slug="acme"), make_org(slug="globex")
    for org in (acme, globex):
        services.generation_submit(
            organization=org, model_slug="sdxl", params={"prompt": "p", "seed": 2}
        )
    user = db_user()
    backend_pid = connection.connection.info.backend_pid

    with tenant_scope(acme.pk):
        assert Job.objects.count() == 1
    assert connection.connection.info.backend_pid == backend_pid  # the same session
    assert db_user() == user
    assert current_tenant() is None
    assert Job.objects.count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('app.organization_id', true)")
        assert cursor.fetchone()[0] in ("", None)
