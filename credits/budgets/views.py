"""The budgets page (/credits/budgets/): owners and admins set budgets per member, team and
API key and manage teams; members see the budgets that apply to them. Thin: forms shape the
input, `credits.budgets.services` and `accounts.teams` do the work."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import teams
from accounts.models import APIKey, Team, User
from accounts.tenancy import tenant_scoped
from config.errors import NotFound, PermissionDenied, ValidationError
from config.web.decorators import organization_required
from config.web.forms import add_service_errors
from credits.budgets import selectors, services
from credits.budgets.forms import BudgetEditForm, BudgetForm, TeamForm, TeamMemberForm

PAGE = "credits:budgets"


def _can_manage(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.can_manage


def _require_manager(request: HttpRequest) -> None:
    if not _can_manage(request):
        raise DjangoPermissionDenied("Only owners and admins can change budgets and teams.")


def _context(request: HttpRequest, **forms) -> dict:
    org = request.organization
    manage = _can_manage(request)
    if manage:
        visible = selectors.budget_list(organization=org)
    else:
        visible = selectors.budgets_applicable(
            organization=org, user_id=request.user.pk, api_key_id=None
        )
    uses = selectors.budgets_uses(budgets=visible.order_by("scope", "id"))
    labelled = [(use, services.budget_label(use.budget)) for use in uses]
    context = {
        "organization": org,
        "can_manage": manage,
        "rows": [{"use": use, "label": label} for use, label in labelled],
    }
    if manage:
        team_rows = [
            {"team": team, "members": list(teams.team_members(team=team))}
            for team in teams.team_list(organization=org)
        ]
        context.update(
            teams=team_rows,
            budget_form=forms.get("budget_form") or BudgetForm(organization=org),
            team_form=forms.get("team_form") or TeamForm(),
            member_form=TeamMemberForm(organization=org),
            edit_form=BudgetEditForm(budgets=labelled, prefix="edit"),
        )
    return context


@organization_required
@tenant_scoped
def budgets(request: HttpRequest) -> HttpResponse:
    """The page; a POST adds a budget (owners and admins)."""
    budget_form = None
    if request.method == "POST":
        _require_manager(request)
        budget_form = BudgetForm(request.POST, organization=request.organization)
        if budget_form.is_valid():
            data = budget_form.cleaned_data
            try:
                budget = services.budget_create(
                    organization=request.organization,
                    actor=request.user,
                    period=data["period"],
                    amount=data["amount"],
                    alert_percent=data["alert_percent"],
                    **budget_form.chosen_target(),
                )
            except (User.DoesNotExist, Team.DoesNotExist, APIKey.DoesNotExist):
                budget_form.add_error(
                    "target", "Choose a member, team or key of this organization."
                )
            except ValidationError as exc:
                add_service_errors(
                    budget_form, exc, {"user": "target", "team": "target", "api_key": "target"}
                )
            except PermissionDenied as exc:
                raise DjangoPermissionDenied(exc.detail) from exc
            else:
                messages.success(request, f"{services.budget_label(budget)} is set.")
                return redirect(PAGE)
    return render(request, "credits/budgets.html", _context(request, budget_form=budget_form))


def _budget(request: HttpRequest, budget_id: int):
    try:
        return selectors.budget_get(organization=request.organization, budget_id=budget_id)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


@require_POST
@organization_required
def budget_edit(request: HttpRequest) -> HttpResponse:
    """Change a budget's limit and alert (the form under the table)."""
    _require_manager(request)
    visible = selectors.budget_list(organization=request.organization)
    labelled = [
        (use, services.budget_label(use.budget)) for use in selectors.budgets_uses(budgets=visible)
    ]
    form = BudgetEditForm(request.POST, budgets=labelled, prefix="edit")
    if not form.is_valid():
        messages.error(request, "Choose a budget, a positive limit and an alert from 1 to 100 %.")
        return redirect(PAGE)
    budget = _budget(request, form.cleaned_data["budget"])
    try:
        budget = services.budget_update(
            budget=budget,
            actor=request.user,
            amount=form.cleaned_data["amount"],
            alert_percent=form.cleaned_data["alert_percent"],
        )
    except ValidationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{services.budget_label(budget)} is updated.")
    return redirect(PAGE)


@require_POST
@organization_required
def budget_delete(request: HttpRequest, budget_id: int) -> HttpResponse:
    _require_manager(request)
    budget = _budget(request, budget_id)
    label = services.budget_label(budget)
    services.budget_delete(budget=budget, actor=request.user)
    messages.success(request, f"{label} is removed.")
    return redirect(PAGE)


@require_POST
@organization_required
def team_create(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    form = TeamForm(request.POST)
    if form.is_valid():
        try:
            team = teams.team_create(
                organization=request.organization,
                name=form.cleaned_data["name"],
                actor=request.user,
            )
        except ValidationError as exc:
            add_service_errors(form, exc, {"slug": "name"})
        else:
            messages.success(request, f"Team “{team.name}” is created.")
            return redirect(PAGE)
    return render(request, "credits/budgets.html", _context(request, team_form=form))


def _team(request: HttpRequest, team_id: int) -> Team:
    try:
        return teams.team_get(organization=request.organization, team_id=team_id)
    except NotFound as exc:
        raise Http404(exc.detail) from exc


@require_POST
@organization_required
def team_delete(request: HttpRequest, team_id: int) -> HttpResponse:
    _require_manager(request)
    team = _team(request, team_id)
    teams.team_delete(team=team, actor=request.user)
    messages.success(request, f"Team “{team.name}” is deleted.")
    return redirect(PAGE)


@require_POST
@organization_required
def team_member_add(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    form = TeamMemberForm(request.POST, organization=request.organization)
    if not form.is_valid():
        messages.error(request, "Choose a team and a member of the organization.")
        return redirect(PAGE)
    team = _team(request, form.cleaned_data["team"])
    user = User.objects.get(pk=form.cleaned_data["user"])
    try:
        teams.team_member_add(team=team, user=user, actor=request.user)
    except ValidationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{user.email} is in “{team.name}”.")
    return redirect(PAGE)


@require_POST
@organization_required
def team_member_remove(request: HttpRequest, team_id: int, user_id: int) -> HttpResponse:
    _require_manager(request)
    team = _team(request, team_id)
    user = User.objects.filter(pk=user_id, team_memberships__team=team).first()
    if user is None:
        raise Http404("No such team member.")
    teams.team_member_remove(team=team, user=user, actor=request.user)
    messages.success(request, f"{user.email} left “{team.name}”.")
    return redirect(PAGE)
