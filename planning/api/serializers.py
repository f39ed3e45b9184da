"""Shapes of the scenario planner API. The inputs themselves are validated by
`planning.scenarios.inputs.parse_inputs` (the same rules and messages as the staff page); the
serializers here check the envelope and document the shapes for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers

from config.api.serializers import StrictSerializer

PCT = "Percent, 0–100, decimal string (up to 4 decimal places)."
USD = "USD, decimal string (6 decimal places in outputs)."


class ScenarioBaselineItemSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=80)
    monthly_usd = serializers.CharField(help_text="USD per month, decimal string.")


class ScenarioInputsSerializer(serializers.Serializer):
    """Documentation of the inputs (validated by `parse_inputs`)."""

    mau = serializers.IntegerField(
        min_value=0, max_value=1_000_000_000, help_text="Monthly active users."
    )
    generations_per_user = serializers.CharField(help_text="Generations per user per month.")
    model_mix = serializers.DictField(
        child=serializers.CharField(),
        help_text=f"Model slug → share of generations. {PCT} Sums to 100.",
    )
    cache_hit_pct = serializers.CharField(
        required=False, help_text=f"Share of generations served from cache (no GPU cost). {PCT}"
    )
    conversion_pct = serializers.CharField(help_text=f"Share of MAU on a paid plan. {PCT}")
    plan_mix = serializers.DictField(
        child=serializers.CharField(),
        help_text=f"Paid plan slug → share of paid users. {PCT} Sums to 100.",
    )
    baseline = ScenarioBaselineItemSerializer(
        many=True,
        required=False,
        help_text="Fixed monthly infrastructure (databases, storage, CDN…).",
    )
    cost_overrides = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text="Model slug → USD per generation, replacing the measured cost.",
    )
    costs_start = serializers.DateField(
        required=False,
        help_text="Start of the period the costs are measured over (default: 30 days ago).",
    )
    costs_end = serializers.DateField(
        required=False, help_text="Its end, exclusive (default: today)."
    )


class ScenarioCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, trim_whitespace=True)
    inputs = serializers.JSONField(help_text="The scenario inputs (see `ScenarioInputs`).")

    def validate_inputs(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("A JSON object of scenario inputs.")
        return value


class ScenarioSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    inputs = ScenarioInputsSerializer()
    created_by = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_created_by(self, scenario) -> str | None:
        user = scenario.created_by
        return user.email if user is not None else None


class ScenarioModelLineSerializer(serializers.Serializer):
    model = serializers.CharField()
    share_pct = serializers.CharField()
    generations = serializers.CharField()
    cached_generations = serializers.CharField()
    gpu_generations = serializers.CharField()
    cost_per_generation_usd = serializers.CharField(allow_null=True, help_text=USD)
    cost_source = serializers.ChoiceField(choices=["measured", "override", "missing"])
    gpu_cost_usd = serializers.CharField(help_text=USD)
    external_cost_usd = serializers.CharField(help_text=USD)


class ScenarioPlanLineSerializer(serializers.Serializer):
    plan = serializers.CharField()
    share_pct = serializers.CharField()
    paid_users = serializers.CharField()
    monthly_price_usd = serializers.CharField(help_text=USD)
    revenue_usd = serializers.CharField(help_text=USD)


class ScenarioTotalsSerializer(serializers.Serializer):
    generations = serializers.CharField()
    gpu_generations = serializers.CharField()
    gpu_cost_usd = serializers.CharField(help_text=USD)
    external_cost_usd = serializers.CharField(help_text=USD)
    baseline_usd = serializers.CharField(help_text=USD)
    total_cost_usd = serializers.CharField(help_text=USD)
    paid_users = serializers.CharField()
    revenue_usd = serializers.CharField(help_text=USD)
    gross_margin_usd = serializers.CharField(help_text=USD)
    gross_margin_fraction = serializers.CharField(allow_null=True)
    revenue_per_paid_user_usd = serializers.CharField(help_text=USD)
    revenue_per_mau_usd = serializers.CharField(help_text=USD)
    variable_cost_per_mau_usd = serializers.CharField(help_text=USD)
    break_even_mau = serializers.IntegerField(allow_null=True)
    break_even_paid_users = serializers.IntegerField(
        allow_null=True, help_text="null: each new user costs more than they bring."
    )


class ScenarioSensitivityRowSerializer(serializers.Serializer):
    variable = serializers.ChoiceField(choices=["conversion", "generations_per_user", "gpu_price"])
    label = serializers.CharField()
    change = serializers.CharField(help_text="Relative change, e.g. -0.2.")
    gpu_cost_usd = serializers.CharField()
    total_cost_usd = serializers.CharField()
    revenue_usd = serializers.CharField()
    gross_margin_usd = serializers.CharField()
    gross_margin_fraction = serializers.CharField(allow_null=True)
    break_even_mau = serializers.IntegerField(allow_null=True)
    break_even_paid_users = serializers.IntegerField(allow_null=True)


class ScenarioCostsPeriodSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()


class ScenarioWarningSerializer(serializers.Serializer):
    code = serializers.CharField()
    model = serializers.CharField()
    message = serializers.CharField()


class ScenarioOutputsSerializer(serializers.Serializer):
    inputs = ScenarioInputsSerializer()
    costs_period = ScenarioCostsPeriodSerializer()
    models = ScenarioModelLineSerializer(many=True)
    plans = ScenarioPlanLineSerializer(many=True)
    baseline = ScenarioBaselineItemSerializer(many=True)
    totals = ScenarioTotalsSerializer()
    sensitivity = ScenarioSensitivityRowSerializer(many=True)
    warnings = ScenarioWarningSerializer(many=True)


class ScenarioDetailSerializer(ScenarioSerializer):
    outputs = ScenarioOutputsSerializer(help_text="Evaluated now, with today's prices.")
