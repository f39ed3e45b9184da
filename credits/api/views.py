"""Credits endpoints of API v1: balance, ledger, quotas and usage of the caller's organization.

Thin views: the organization comes from the API key (or the session's active organization),
query parameters are validated by serializers (a bad one is a 400 `validation_error` naming
it), reads go through org-scoped `credits.selectors`. Nothing here writes.
"""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import request_api_key
from accounts.models import Subscription
from accounts.tenancy import tenant_scoped
from config.api.schema import AUTH_ERRORS, problem_responses
from config.errors import NotFound
from credits import selectors
from credits.api.serializers import (
    QUOTA_UNITS,
    BalanceSerializer,
    LedgerEntrySerializer,
    LedgerQuerySerializer,
    QuotasSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)
from credits.budgets import selectors as budget_selectors
from credits.budgets.api import EXAMPLE as BUDGET_EXAMPLE

TAGS = ["credits"]


def _caller_budgets(request):
    """The budgets that apply to the caller's submissions (the rule of `spend_authorize`)."""
    key = request_api_key(request)
    user = request.user if request.user is not None and request.user.is_authenticated else None
    applicable = budget_selectors.budgets_applicable(
        organization=request.organization,
        user_id=key.created_by_id if key is not None else getattr(user, "pk", None),
        api_key_id=key.pk if key is not None else None,
    )
    return budget_selectors.budgets_uses(budgets=applicable)


def _plan_slug(organization) -> str:
    try:
        return organization.subscription.plan.slug
    except Subscription.DoesNotExist:
        raise NotFound("This organization has no subscription.") from None


class BalanceView(APIView):
    @extend_schema(
        operation_id="balance_retrieve",
        tags=TAGS,
        summary="Credit balance",
        description=(
            "The organization's credits: `balance` (posted), `held` (reserved by running jobs), "
            "`available` = balance − held, how much of the plan's overage allowance is used, "
            "the live grants in burn-down order and the next one to expire. Amounts are "
            "decimal strings."
        ),
        responses={200: BalanceSerializer, **problem_responses(*AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request):
        summary = selectors.balance_summary(organization=request.organization)
        return Response(BalanceSerializer(summary).data)


class LedgerView(ListAPIView):
    serializer_class = LedgerEntrySerializer

    def get_queryset(self):
        query = LedgerQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.entries_filtered(
            organization=self.request.organization,
            kind=query.validated_data.get("kind"),
            since=query.validated_data.get("since"),
            until=query.validated_data.get("until"),
        )

    @extend_schema(
        operation_id="ledger_list",
        tags=TAGS,
        summary="Ledger entries",
        description=(
            "Every movement of the organization's credits, newest first. Entries are "
            "immutable; `balance_after`/`held_after` give the account after each one. "
            "Cursor-paginated: follow `next` / `previous`."
        ),
        parameters=[LedgerQuerySerializer],
        responses={
            200: LedgerEntrySerializer(many=True),
            **problem_responses(400, *AUTH_ERRORS),
        },
    )
    @tenant_scoped
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class QuotasView(APIView):
    @extend_schema(
        operation_id="quotas_retrieve",
        tags=TAGS,
        summary="Plan limits and current use",
        description=(
            "The plan's limits in the order a submission is checked (API access, rate limit "
            "per API key, daily generation cap, concurrent jobs, overage allowance), each "
            "with its current use. A null `limit` means unlimited. `budgets`: the budgets a "
            "submission by the caller reserves on (the API key's, the member's — the key's "
            "creator for a key — and the member's teams'), checked after the plan's quotas and "
            "before credits; `limit` is the name a refusal carries (budget:<scope>:<id>)."
        ),
        responses={200: QuotasSerializer, **problem_responses(*AUTH_ERRORS)},
        examples=[
            OpenApiExample(
                "starter",
                response_only=True,
                value={
                    "plan": "starter",
                    "quotas": [
                        {
                            "name": "api_access",
                            "unit": "boolean",
                            "limit": 1,
                            "used": None,
                            "resets_at": None,
                        },
                        {
                            "name": "api_rate_limit_per_min",
                            "unit": "requests_per_minute",
                            "limit": 300,
                            "used": None,
                            "resets_at": None,
                        },
                        {
                            "name": "daily_generation_cap",
                            "unit": "generations_per_day",
                            "limit": None,
                            "used": 3,
                            "resets_at": "2026-01-06T00:00:00Z",
                        },
                        {
                            "name": "max_concurrent_jobs",
                            "unit": "jobs",
                            "limit": 2,
                            "used": 1,
                            "resets_at": None,
                        },
                        {
                            "name": "overage_cap",
                            "unit": "credits",
                            "limit": "500.000",
                            "used": "0.000",
                            "resets_at": None,
                        },
                    ],
                    "budgets": [BUDGET_EXAMPLE],
                },
            )
        ],
    )
    @tenant_scoped
    def get(self, request):
        organization = request.organization
        plan = _plan_slug(organization)
        quotas = [
            {
                "name": q.name,
                "unit": QUOTA_UNITS.get(q.name, ""),
                "limit": q.limit,
                "used": q.used,
                "resets_at": q.resets_at,
            }
            for q in selectors.quota_status(organization=organization)
        ]
        body = QuotasSerializer({"plan": plan, "quotas": quotas}).data
        body["budgets"] = [use.as_dict() for use in _caller_budgets(request)]
        return Response(body)


class UsageView(APIView):
    @extend_schema(
        operation_id="usage_retrieve",
        tags=TAGS,
        summary="Credits spent and generations",
        description=(
            "Credits charged and generations of jobs started in [`start`, `end`), per UTC day or "
            "per model, with totals. `start`/`end` are dates (YYYY-MM-DD, UTC midnight) or "
            "ISO 8601 timestamps; `end` is exclusive. Default: the last 30 days (today "
            "included); at most 366 days."
        ),
        parameters=[UsageQuerySerializer],
        responses={200: UsageSerializer, **problem_responses(400, *AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = query.validated_data["start"], query.validated_data["end"]
        group_by = query.validated_data["group_by"]
        rows = selectors.usage(
            organization=request.organization, start=start, end=end, group_by=group_by
        )
        totals = {
            "credits_spent": sum((r.credits_spent for r in rows), Decimal(0)),
            "generations": sum(r.generations for r in rows),
            "released": sum(r.released for r in rows),
        }
        body = {
            "start": start,
            "end": end,
            "group_by": group_by,
            "rows": [
                {
                    group_by: r.key,
                    "credits_spent": r.credits_spent,
                    "generations": r.generations,
                    "released": r.released,
                }
                for r in rows
            ],
            "totals": totals,
        }
        return Response(UsageSerializer(body).data)
