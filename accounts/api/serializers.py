"""Read-only representations of accounts objects for the REST API (no logic here)."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import APIKey, Organization, Plan, Subscription


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = [
            "slug",
            "name",
            "monthly_price_usd",
            "monthly_credits",
            "overage_enabled",
            "overage_cap",
            "overage_price_usd",
            "daily_generation_cap",
            "max_concurrent_jobs",
            "api_rate_limit_per_min",
            "queue_priority",
            "api_access",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "monthly_price_usd": {"help_text": "USD per month; null means per contract."},
            "daily_generation_cap": {"help_text": "Generations per day; null means no cap."},
            "max_concurrent_jobs": {"help_text": "Jobs running at once; null means unlimited."},
            "api_rate_limit_per_min": {
                "help_text": "Requests per minute per API key; null means no limit."
            },
        }


class SubscriptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Subscription
        fields = ["status", "current_period_start", "current_period_end", "cancel_at_period_end"]
        read_only_fields = fields


class OrganizationSerializer(serializers.ModelSerializer):
    plan = PlanSerializer(source="subscription.plan", read_only=True, allow_null=True)
    subscription = SubscriptionSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Organization
        fields = ["slug", "name", "created_at", "plan", "subscription"]
        read_only_fields = fields


class APIKeySerializer(serializers.ModelSerializer):
    """An API key's metadata. The secret is shown once at creation and never stored; neither it
    nor its digest is ever returned."""

    is_active = serializers.BooleanField(read_only=True, help_text="False once revoked.")

    class Meta:
        model = APIKey
        fields = ["id", "name", "prefix", "is_active", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields
        extra_kwargs = {
            "prefix": {"help_text": "The visible part of the key: `gpuc_<prefix>_…`."},
        }
