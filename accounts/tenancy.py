"""Tenant scope for PostgreSQL row-level security (defence in depth behind the ORM scoping).

The tenant tables (accounts/migrations/0006_row_level_security.py) have policies for the role
`gpucredits_tenant` only: rows of the organization in `app.organization_id` (memberships and
organizations also those of the user in `app.user_id`). `tenant_scope()` runs its block in a
transaction as that role with those settings, so even an unscoped ORM query
(`Job.objects.all()`) inside it returns only the tenant's rows. Everything outside a tenant
scope — staff pages, admin, workers, beat, commands, migrations — runs as the connection's own
role, which the policies do not restrict; `staff_scope()` makes that explicit inside a tenant
scope (e.g. a cross-tenant lookup a tenant request legitimately needs).

Settings are made with `set_config(..., is_local => true)` (SET LOCAL): they end with the
transaction, and the previous values are put back when the block ends inside an outer
transaction, so nothing leaks to the rest of the request or to the next user of a pooled or
persistent connection. On an exception the block's savepoint (or transaction) is rolled back,
which undoes them too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.views import View

TENANT_ROLE = "gpucredits_tenant"
NO_ROLE = "none"  # the value of the `role` setting meaning "the session's own role"


def _settings(connection: BaseDatabaseWrapper) -> tuple[str, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_CURRENT}")
        return cursor.fetchone()


_CURRENT = (
    "current_setting('role'), coalesce(current_setting('app.organization_id', true), ''), "
    "coalesce(current_setting('app.user_id', true), '')"
)
_APPLY = (
    "set_config('app.organization_id', %s, true), set_config('app.user_id', %s, true), "
    "set_config('role', %s, true)"
)


def _apply(
    connection: BaseDatabaseWrapper, *, role: str, organization: str, user: str
) -> tuple[str, str, str]:
    """Set the scope for the rest of the transaction; returns the settings it replaced (read
    first, in the same round trip: the CTE is materialized before the set_config calls)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH previous AS MATERIALIZED (SELECT {_CURRENT}) "
            f"SELECT previous.*, {_APPLY} FROM previous",
            [organization, user, role],
        )
        return cursor.fetchone()[:3]


@contextmanager
def _scope(*, role: str, organization: str, user: str, using: str) -> Iterator[None]:
    connection = connections[using]
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=using):
        previous = _apply(connection, role=role, organization=organization, user=user)
        yield
        # Only reached without an exception. The outermost transaction's commit ends the SET
        # LOCALs; inside an outer transaction, put back what it had (on an exception, atomic's
        # rollback of this block's savepoint undoes them).
        if not outermost and not connection.needs_rollback:
            prev_role, prev_org, prev_user = previous
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {_APPLY}", [prev_org, prev_user, prev_role])


@contextmanager
def tenant_scope(
    organization_id: int, *, user_id: int | None = None, using: str = "default"
) -> Iterator[None]:
    """Run the block restricted to one organization's rows (and, for memberships and
    organizations, the user's own). Opens a transaction (a savepoint inside one)."""
    if organization_id is None:
        raise ValueError("tenant_scope needs an organization id")
    with _scope(
        role=TENANT_ROLE,
        organization=str(int(organization_id)),
        user="" if user_id is None else str(int(user_id)),
        using=using,
    ):
        yield


@contextmanager
def staff_scope(*, using: str = "default") -> Iterator[None]:
    """Run the block unrestricted (the connection's own role), also inside a tenant scope.
    For staff, maintenance and cross-tenant lookups: use it on purpose, never by default."""
    with _scope(role=NO_ROLE, organization="", user="", using=using):
        yield


def current_tenant(*, using: str = "default") -> int | None:
    """The organization id the current transaction is restricted to, or None."""
    role, organization, _ = _settings(connections[using])
    return int(organization) if role == TENANT_ROLE and organization else None


def request_tenant_scope(request) -> AbstractContextManager:
    """The scope for a request: its organization (from the API key or the session) and, for a
    logged-in user, the user. A request without an organization gets no scope (its view
    answers 401/403 or redirects, reading no tenant data)."""
    organization = getattr(request, "organization", None)
    if organization is None:
        return nullcontext()
    user = getattr(request, "user", None)
    user_id = user.pk if user is not None and user.is_authenticated else None
    return tenant_scope(organization.pk, user_id=user_id)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def tenant_scoped(view: Callable) -> Callable:
    """Decorate a view function or a class-based view's handler method (`get`): a read request
    (GET/HEAD) runs in `request_tenant_scope(request)`; writes go through the services
    unscoped, as before (they scope by organization in code and lock their rows). The view must
    build its whole response inside (DRF serializers' `.data` and `render()` do; a streamed
    response or a lazy TemplateResponse would query after the scope ended)."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        request = args[1] if args and isinstance(args[0], View) else args[0]
        if request.method not in SAFE_METHODS:
            return view(*args, **kwargs)
        with request_tenant_scope(request):
            return view(*args, **kwargs)

    return wrapper
