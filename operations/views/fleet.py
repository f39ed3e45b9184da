"""The staff fleet page, mounted at /staff/fleet/ (`operations.urls_fleet`): per managed pool its
nodes by state (with the operation under way and when it should be done, health, the primary
badge), queue depth and oldest wait per tier, cost so far today and the last 30 scaling
decisions — and the staff actions: rent a node for a pool; resume, stop or release a node
where its state allows (`infra_costs.fleet.fleet_staff_action`, recorded as decisions by the
acting user). htmx re-fetches the page body every 10 s; without JavaScript it is a plain page.

Staff only (anonymous → login, others → 404), like the other staff pages.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from config.web.decorators import staff_required
from infra_costs import fleet
from infra_costs.models import Node, NodePool, ScalingAction, ScalingDecision
from operations.fleet_page import fleet_page

REFRESH_S = 10

NODE_ACTIONS = (ScalingAction.RESUME, ScalingAction.STOP, ScalingAction.RELEASE)


class FleetActionForm(forms.Form):
    action = forms.ChoiceField(choices=[(a, a) for a in fleet.STAFF_ACTIONS])
    node = forms.IntegerField(required=False, min_value=1)

    def clean(self):
        data = super().clean()
        action, node = data.get("action"), data.get("node")
        if action in NODE_ACTIONS and node is None:
            raise forms.ValidationError("Choose a node.")
        if action == ScalingAction.RENT and node is not None:
            raise forms.ValidationError("Renting takes no node.")
        return data


@staff_required
def fleet_index(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    context = {"pools": fleet_page(now=now), "now": now, "refresh_s": REFRESH_S}
    template = "staff/partials/fleet_body.html" if request.htmx else "staff/fleet.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _message(decision: ScalingDecision) -> str:
    node = decision.node
    if not decision.ok:
        what = node.name if node is not None else "No node rented"
        return f"{what}: {decision.error}"
    minutes = ""
    if node.transition_ready_at is not None:
        left = round((node.transition_ready_at - decision.at).total_seconds() / 60)
        minutes = f" in about {left} min" if left >= 1 else " in under a minute"
    return {
        ScalingAction.RENT: f"Renting {node.name}: hot{minutes}.",
        ScalingAction.RESUME: f"Resuming {node.name}: hot{minutes}.",
        ScalingAction.STOP: f"Stopping {node.name} to warm.",
        ScalingAction.RELEASE: f"Releasing {node.name}: it goes back to the provider.",
    }[decision.action]


@staff_required
@require_POST
def fleet_action(request: HttpRequest, pool: str) -> HttpResponse:
    pool_obj = get_object_or_404(NodePool, slug=pool, autoscale__isnull=False)
    back = f"{reverse('staff_fleet:index')}#pool-{pool_obj.slug}"
    form = FleetActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing done: that action is not available here.")
        return redirect(back)
    action, node_id = form.cleaned_data["action"], form.cleaned_data["node"]
    node = None
    if node_id is not None:
        node = get_object_or_404(Node.objects.exclude(provider=""), pk=node_id, pool=pool_obj)
    decision = fleet.fleet_staff_action(pool=pool_obj, action=action, node=node, actor=request.user)
    if decision.ok:
        messages.success(request, _message(decision))
    else:
        messages.error(request, _message(decision))
    if decision.node is not None:
        back = f"{reverse('staff_fleet:index')}#node-{decision.node.name}"
    return redirect(back)
