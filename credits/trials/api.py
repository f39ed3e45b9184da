"""`GET/POST /api/v1/trial/` (the organization's free trial and the trials it can start; an
owner signed in starts one) and `GET /api/v1/referrals/` (its referral link and what its
referrals earned) — docs/billing.md, "Free trials" and "Referrals"."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import request_api_key
from accounts.models import Subscription
from config.api.schema import AUTH_ERRORS, problem_responses
from config.errors import PermissionDenied
from credits.trials import selectors, services
from credits.trials.models import OrganizationTrial, PlanTrial
from credits.trials.referrals import referral_link

SESSION_ONLY = "Trials are started by an owner signed in, not with an API key."


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def trial_body(trial: OrganizationTrial) -> dict:
    return {
        "plan": trial.plan_trial.plan.slug,
        "plan_name": trial.plan_trial.plan.name,
        "state": "ended" if trial.ended_at else "running",
        "started_at": _iso(trial.started_at),
        "ends_at": _iso(trial.ends_at),
        "ended_at": _iso(trial.ended_at),
        "credits": str(trial.grant.amount),
        "credits_left": str(trial.grant.remaining),
    }


def offer_body(offer: PlanTrial) -> dict:
    return {
        "id": offer.pk,
        "plan": offer.plan.slug,
        "plan_name": offer.plan.name,
        "days": offer.days,
        "credits": str(offer.credits),
    }


class TrialSerializer(serializers.Serializer):
    plan = serializers.CharField()
    plan_name = serializers.CharField()
    state = serializers.ChoiceField(choices=["running", "ended"])
    started_at = serializers.CharField()
    ends_at = serializers.CharField()
    ended_at = serializers.CharField(allow_null=True)
    credits = serializers.CharField(help_text="Trial credits granted (decimal string).")
    credits_left = serializers.CharField(help_text="What the trial grant still holds.")


class OfferSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Pass as `plan_trial` to start it.")
    plan = serializers.CharField()
    plan_name = serializers.CharField()
    days = serializers.IntegerField()
    credits = serializers.CharField()


class TrialStateSerializer(serializers.Serializer):
    trial = TrialSerializer(allow_null=True, help_text="The one trial ever started, or null.")
    offers = OfferSerializer(many=True, help_text="Trials the organization can start now.")


class TrialStartSerializer(serializers.Serializer):
    plan_trial = serializers.IntegerField(min_value=1)


class ReferralsSerializer(serializers.Serializer):
    code = serializers.CharField()
    link = serializers.CharField(help_text="The sign-up link that credits both sides.")
    credits_per_referral = serializers.IntegerField()
    referrals = serializers.IntegerField(help_text="Organizations referred and credited.")
    credits_earned = serializers.CharField(help_text="Credits granted to you (decimal string).")


TRIAL_EXAMPLE = {
    "plan": "studio",
    "plan_name": "Studio",
    "state": "running",
    "started_at": "2026-12-02T15:40:00Z",
    "ends_at": "2026-12-16T15:40:00Z",
    "ended_at": None,
    "credits": "500.000",
    "credits_left": "500.000",
}


class TrialView(APIView):
    @extend_schema(
        operation_id="trial_retrieve",
        tags=["credits"],
        summary="The organization's free trial",
        description=(
            "The organization's trial (running or ended; one per organization ever) and the "
            "trials it can start now (only on the free plan, never trialed before)."
        ),
        responses={200: TrialStateSerializer, **problem_responses(*AUTH_ERRORS)},
        examples=[
            OpenApiExample(
                "on a trial",
                response_only=True,
                value={"trial": TRIAL_EXAMPLE, "offers": []},
            )
        ],
    )
    def get(self, request):
        organization = request.organization
        subscription = (
            Subscription.objects.select_related("plan").filter(organization=organization).first()
        )
        state = selectors.trial_status(organization=organization, subscription=subscription)
        return Response(
            {
                "trial": trial_body(state.trial) if state.trial else None,
                "offers": [offer_body(offer) for offer in state.offers],
            }
        )

    @extend_schema(
        operation_id="trial_start",
        tags=["credits"],
        summary="Start the free trial",
        description=(
            "Starts a trial offered by `GET /api/v1/trial/` (no card): the plan changes to the "
            "trial's with status `trialing` and the trial credits are granted (source `trial`, "
            "expiring at its end). Owners signed in only; API keys get 403. A second trial, an "
            "organization not on the free plan or an unknown offer answer 400 and change nothing."
        ),
        request=TrialStartSerializer,
        responses={201: TrialSerializer, **problem_responses(400, *AUTH_ERRORS)},
        examples=[
            OpenApiExample("request", request_only=True, value={"plan_trial": 1}),
            OpenApiExample(
                "started", response_only=True, status_codes=["201"], value=TRIAL_EXAMPLE
            ),
        ],
    )
    def post(self, request):
        if request_api_key(request) is not None:
            raise PermissionDenied(SESSION_ONLY)
        data = TrialStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        trial = services.trial_start(
            organization=request.organization,
            plan_trial_id=data.validated_data["plan_trial"],
            actor=request.user,
        )
        return Response(trial_body(trial), status=status.HTTP_201_CREATED)


class ReferralsView(APIView):
    @extend_schema(
        operation_id="referrals_retrieve",
        tags=["credits"],
        summary="The organization's referral link and earnings",
        description=(
            "The referral code and sign-up link (made on first use), the credits each side "
            "gets per referral, how many organizations were referred and credited, and the "
            "credits those referrals granted to this organization."
        ),
        responses={200: ReferralsSerializer, **problem_responses(*AUTH_ERRORS)},
        examples=[
            OpenApiExample(
                "referrals",
                response_only=True,
                value={
                    "code": "K7QD2MZP",
                    "link": "https://app.example.com/signup/?ref=K7QD2MZP",
                    "credits_per_referral": 200,
                    "referrals": 3,
                    "credits_earned": "600.000",
                },
            )
        ],
    )
    def get(self, request):
        organization = request.organization
        link = referral_link(organization=organization)
        summary = selectors.referral_summary(organization=organization)
        return Response(
            {
                "code": link.rsplit("ref=", 1)[-1],
                "link": link,
                "credits_per_referral": summary.credits_per_referral,
                "referrals": summary.count,
                "credits_earned": str(summary.credits_earned),
            }
        )
