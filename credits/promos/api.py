"""`POST /api/v1/promo-codes/redeem/`: redeem a promo code for the caller's organization (an
owner or admin signed in, or an API key). Wrong codes answer 400 "not valid" — the same for a
code that does not exist, has expired or is used up — and are throttled per organization."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import request_api_key
from config.api.schema import AUTH_ERRORS, problem_responses
from credits.promos import services
from credits.promos.models import PromoRedemption


class RedeemSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64, trim_whitespace=True)


class RedemptionSerializer(serializers.Serializer):
    code = serializers.CharField()
    credits = serializers.CharField(help_text="Credits granted (decimal string).")
    expires_at = serializers.CharField(
        allow_null=True, help_text="When the granted credits expire (UTC); null: never."
    )
    redeemed_at = serializers.CharField()


def redemption_body(redemption: PromoRedemption) -> dict:
    grant = redemption.grant
    return {
        "code": redemption.promo_code.code,
        "credits": str(grant.amount),
        "expires_at": grant.expires_at.isoformat().replace("+00:00", "Z")
        if grant.expires_at
        else None,
        "redeemed_at": redemption.redeemed_at.isoformat().replace("+00:00", "Z"),
    }


class PromoRedeemView(APIView):
    @extend_schema(
        operation_id="promo_codes_redeem",
        tags=["credits"],
        summary="Redeem a promo code",
        description=(
            "Grants the code's credits (grant source `promo`, expiring as the code says) to the "
            "caller's organization — once per organization unless the code allows more. "
            "An unknown, inactive, expired, not-yet-valid or used-up code answers 400 "
            '`validation_error` "This code is not valid."; after 10 wrong codes in 15 minutes '
            "the organization's redemptions are refused for 15 minutes (429 `rate_limited`, "
            "`Retry-After`). Signed in: owners and admins only."
        ),
        request=RedeemSerializer,
        responses={201: RedemptionSerializer, **problem_responses(400, *AUTH_ERRORS)},
        examples=[
            OpenApiExample("request", request_only=True, value={"code": "LAUNCH500"}),
            OpenApiExample(
                "granted",
                response_only=True,
                status_codes=["201"],
                value={
                    "code": "LAUNCH500",
                    "credits": "500.000",
                    "expires_at": "2027-01-01T12:00:00Z",
                    "redeemed_at": "2026-12-02T12:00:00Z",
                },
            ),
        ],
    )
    def post(self, request):
        data = RedeemSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        redemption = services.promo_redeem(
            organization=request.organization,
            code=data.validated_data["code"],
            actor=request.user,
            api_key=request_api_key(request),
        )
        return Response(redemption_body(redemption), status=status.HTTP_201_CREATED)
