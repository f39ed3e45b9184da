"""Forms of the budgets page (owners and admins): add a budget, change one, add a team, add a
member to a team. The services validate again; these only shape the input."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from accounts.models import APIKey, Organization, Team, User
from credits.budgets.models import BudgetPeriod


def target_choices(organization: Organization) -> list:
    """Who a budget may be for, grouped: members, teams, active API keys (value scope:id)."""
    members = User.objects.filter(memberships__organization=organization).order_by("email")
    teams = Team.objects.filter(organization=organization).order_by("name")
    keys = APIKey.objects.filter(organization=organization, revoked_at__isnull=True)
    return [
        ("", "Choose…"),
        ("Members", [(f"member:{u.pk}", u.email) for u in members]),
        ("Teams", [(f"team:{t.pk}", t.name) for t in teams]),
        ("API keys", [(f"key:{k.pk}", f"{k.name} ({k.prefix}…)") for k in keys.order_by("name")]),
    ]


class BudgetForm(forms.Form):
    target = forms.ChoiceField(label="Budget for")
    period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTH)
    amount = forms.DecimalField(
        label="Limit (credits)", min_value=Decimal("0.001"), max_digits=13, decimal_places=3
    )
    alert_percent = forms.IntegerField(
        label="Alert at (%)", required=False, min_value=1, max_value=100, initial=80
    )

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        self.fields["target"].choices = target_choices(organization)

    def chosen_target(self) -> dict:
        """The scope and the member, team or key chosen (of this organization only)."""
        scope, _, pk = self.cleaned_data["target"].partition(":")
        org = self.organization
        if scope == "member":
            return {"scope": scope, "user": User.objects.get(pk=pk, memberships__organization=org)}
        if scope == "team":
            return {"scope": scope, "team": Team.objects.get(pk=pk, organization=org)}
        return {"scope": scope, "api_key": APIKey.objects.get(pk=pk, organization=org)}


class BudgetEditForm(forms.Form):
    budget = forms.TypedChoiceField(label="Budget", coerce=int)
    amount = forms.DecimalField(
        label="Limit (credits)", min_value=Decimal("0.001"), max_digits=13, decimal_places=3
    )
    alert_percent = forms.IntegerField(
        label="Alert at (%)", required=False, min_value=1, max_value=100
    )

    def __init__(self, *args, budgets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["budget"].choices = [("", "Choose…")] + [
            (use.budget.pk, label) for use, label in budgets
        ]


class TeamForm(forms.Form):
    name = forms.CharField(label="Team name", max_length=100)


class TeamMemberForm(forms.Form):
    team = forms.TypedChoiceField(label="Team", coerce=int)
    user = forms.TypedChoiceField(label="Member", coerce=int)

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        members = User.objects.filter(memberships__organization=organization).order_by("email")
        teams = Team.objects.filter(organization=organization).order_by("name")
        self.fields["team"].choices = [("", "Choose…")] + [(t.pk, t.name) for t in teams]
        self.fields["user"].choices = [("", "Choose…")] + [(u.pk, u.email) for u in members]
