"""Budgets in API v1 (`/api/v1/budgets/`), for the caller's organization only: another
organization's budget is a 404. Owners and admins (signed in) create, change and delete them;
an API key may read them but never change them (a key must not lift its own budget); a member
signed in sees the budgets that apply to them."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import request_api_key
from accounts.models import APIKey, Membership, Team, User
from accounts.tenancy import tenant_scoped
from config.api.schema import AUTH_ERRORS, problem_responses
from config.errors import NotFound, PermissionDenied, ValidationError
from credits.budgets import selectors, services
from credits.budgets.models import BudgetPeriod, BudgetScope

TAGS = ["budgets"]
BUDGET_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="Budget id.")

EXAMPLE = {
    "id": 3,
    "limit": "budget:team:design",
    "scope": "team",
    "target": "design",
    "period": "month",
    "limit_value": "5000.000",
    "alert_percent": 80,
    "used": "1210.000",
    "reserved": "15.000",
    "remaining": "3775.000",
    "resets_at": "2027-01-01T00:00:00Z",
}


class BudgetSerializer(serializers.Serializer):
    """A budget and its use in the current period (`selectors.BudgetUse.as_dict`)."""

    id = serializers.IntegerField()
    limit = serializers.CharField(
        help_text="The name a refusal carries in `limit`: budget:<scope>:<id>."
    )
    scope = serializers.ChoiceField(choices=BudgetScope.values)
    target = serializers.CharField(
        help_text="The team's slug, the API key's prefix or the member's user id."
    )
    period = serializers.ChoiceField(choices=BudgetPeriod.values)
    limit_value = serializers.CharField(help_text="The hard limit in credits (decimal string).")
    alert_percent = serializers.IntegerField(
        allow_null=True, help_text="Soft threshold (% of the limit) that alerts once a period."
    )
    used = serializers.CharField(help_text="Credits charged in the current period.")
    reserved = serializers.CharField(help_text="Credits held by queued and running jobs.")
    remaining = serializers.CharField()
    resets_at = serializers.CharField(
        allow_null=True, help_text="When the period ends (UTC); null for a hard total."
    )


class BudgetCreateSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=BudgetScope.values)
    member = serializers.IntegerField(required=False, help_text="scope=member: the user id.")
    team = serializers.SlugField(required=False, help_text="scope=team: the team's slug.")
    api_key = serializers.CharField(
        required=False, max_length=16, help_text="scope=key: the key's prefix."
    )
    period = serializers.ChoiceField(choices=BudgetPeriod.values)
    amount = serializers.DecimalField(
        max_digits=13, decimal_places=3, min_value=Decimal("0.001"), help_text="Credits per period."
    )
    alert_percent = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100
    )


class BudgetUpdateSerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=BudgetPeriod.values, required=False)
    amount = serializers.DecimalField(
        max_digits=13, decimal_places=3, min_value=Decimal("0.001"), required=False
    )
    alert_percent = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=100
    )


def _manager(request) -> User:
    """The signed-in owner or admin making a change (an API key never may)."""
    user = request.user
    if request_api_key(request) is not None or user is None or not user.is_authenticated:
        raise PermissionDenied(
            "Budgets are changed by an owner or admin signed in, not by API key."
        )
    return user


def _visible(request):
    """Owners, admins and API keys see every budget; a member sees the ones that apply to them."""
    organization = request.organization
    user = request.user
    if request_api_key(request) is None and user is not None and user.is_authenticated:
        membership = Membership.objects.filter(organization=organization, user=user).first()
        if membership is None or not membership.can_manage:
            return selectors.budgets_applicable(
                organization=organization, user_id=user.pk, api_key_id=None
            )
    return selectors.budget_list(organization=organization)


def _target(organization, data) -> dict:
    scope = data["scope"]
    missing = {"member": "member", "team": "team", "key": "api_key"}[scope]
    if data.get(missing) in (None, ""):
        raise ValidationError(
            f"{missing}: required for scope {scope}.", errors={missing: ["Required."]}
        )
    if scope == BudgetScope.MEMBER:
        user = User.objects.filter(
            pk=data["member"], memberships__organization=organization
        ).first()
        if user is None:
            raise ValidationError("member: no such member.", errors={"member": ["No such member."]})
        return {"user": user}
    if scope == BudgetScope.TEAM:
        team = Team.objects.filter(organization=organization, slug=data["team"]).first()
        if team is None:
            raise ValidationError("team: no such team.", errors={"team": ["No such team."]})
        return {"team": team}
    key = APIKey.objects.filter(organization=organization, prefix=data["api_key"]).first()
    if key is None:
        raise ValidationError("api_key: no such key.", errors={"api_key": ["No such key."]})
    return {"api_key": key}


class BudgetListView(APIView):
    @extend_schema(
        operation_id="budgets_list",
        tags=TAGS,
        summary="The organization's budgets and their use",
        description=(
            "Budgets per member, team or API key, each with its use in the current period "
            "(`used` charged, `reserved` held by open jobs) and when it resets. A member signed "
            "in sees the budgets that apply to them."
        ),
        responses={200: BudgetSerializer(many=True), **problem_responses(*AUTH_ERRORS)},
        examples=[OpenApiExample("team", response_only=True, value={"results": [EXAMPLE]})],
    )
    @tenant_scoped
    def get(self, request):
        uses = selectors.budgets_uses(budgets=_visible(request))
        return Response({"results": [use.as_dict() for use in uses]})

    @extend_schema(
        operation_id="budgets_create",
        tags=TAGS,
        summary="Add a budget (owners and admins)",
        description=(
            "One budget per member, team or API key: `amount` credits per `period` (day, week, "
            "month: UTC; or `total`). Jobs that would take it past the limit are refused with "
            "429 `quota_exceeded` and `limit: budget:<scope>:<id>`."
        ),
        request=BudgetCreateSerializer,
        responses={201: BudgetSerializer, **problem_responses(400, *AUTH_ERRORS)},
    )
    def post(self, request):
        actor = _manager(request)
        data = BudgetCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        budget = services.budget_create(
            organization=request.organization,
            actor=actor,
            scope=values["scope"],
            period=values["period"],
            amount=values["amount"],
            alert_percent=values.get("alert_percent"),
            **_target(request.organization, values),
        )
        body = selectors.budget_use(budget=budget).as_dict()
        return Response(body, status=status.HTTP_201_CREATED)


class BudgetDetailView(APIView):
    def _budget(self, request, id):
        return selectors.budget_get(organization=request.organization, budget_id=id)

    @extend_schema(
        operation_id="budgets_retrieve",
        tags=TAGS,
        summary="One budget and its use",
        parameters=[BUDGET_ID],
        responses={200: BudgetSerializer, **problem_responses(404, *AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request, id):
        budget = _visible(request).filter(pk=self._budget(request, id).pk).first()
        if budget is None:  # not one of theirs, for a member
            raise NotFound("No such budget.")
        return Response(selectors.budget_use(budget=budget).as_dict())

    @extend_schema(
        operation_id="budgets_update",
        tags=TAGS,
        summary="Change a budget's limit, period or alert threshold (owners and admins)",
        parameters=[BUDGET_ID],
        request=BudgetUpdateSerializer,
        responses={200: BudgetSerializer, **problem_responses(400, 404, *AUTH_ERRORS)},
    )
    def patch(self, request, id):
        actor = _manager(request)
        budget = self._budget(request, id)
        data = BudgetUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        budget = services.budget_update(
            budget=budget,
            actor=actor,
            amount=values.get("amount"),
            period=values.get("period"),
            alert_percent=values.get("alert_percent", "keep"),
        )
        return Response(selectors.budget_use(budget=budget).as_dict())

    @extend_schema(
        operation_id="budgets_destroy",
        tags=TAGS,
        summary="Delete a budget (owners and admins)",
        parameters=[BUDGET_ID],
        responses={204: None, **problem_responses(404, *AUTH_ERRORS)},
    )
    def delete(self, request, id):
        actor = _manager(request)
        services.budget_delete(budget=self._budget(request, id), actor=actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
