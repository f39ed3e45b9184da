"""Read-only representations of accounts objects for the REST API (no logic here)."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import APIKey, Organization, Plan, Subscription


class EntitlementsSerializer(serializers.ModelSerializer):
    """What the plan includes, checked at acceptance (docs/pricing.md, "Entitlements"); a
    null limit means no limit."""

    priority = serializers.CharField(source="queue_priority", help_text="Queue priority.")

    class Meta:
        model = Plan
        fields = [
            "api_access",
            "models_allowed",
            "max_megapixels",
            "max_duration_s",
            "max_batch_size",
            "watermark",
            "priority",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "models_allowed": {"help_text": "Model slugs the plan may run; null means all."},
            "max_megapixels": {"help_text": "Largest width × height in megapixels; null: none."},
            "max_duration_s": {"help_text": "Longest duration in seconds; null: no limit."},
            "max_batch_size": {"help_text": "Most images per request; null: no limit."},
        }


class PlanSerializer(serializers.ModelSerializer):
    entitlements = EntitlementsSerializer(source="*", read_only=True)

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
            "entitlements",
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
