"""Staff pricing page, mounted at /staff/pricing/ (this module is its URLconf too).

Per model: cost per generation (active and fully loaded) over a period, the price now, the
margin it leaves, the policy's suggested price — red flag when a model sells below cost — and
an "Apply" form per row (POST + CSRF, reason prefilled) that makes the suggestion a new price
version with the acting staff user through `generations.pricing.price_apply`. The policy is
edited in the admin; prices can also be set by hand there (every change is a version).

Staff only (anonymous → login, others → 404), like the cost report (`infra_costs.views`).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from config.errors import ServiceError
from config.web.decorators import staff_required
from config.web.formats import to_decimal
from generations import pricing
from generations.models import AIModel, PricingPolicy
from infra_costs.forms import COMMON_ZONES, PeriodForm, presets


class ApplyForm(forms.Form):
    model = forms.SlugField(max_length=100)
    expected = forms.DecimalField(max_digits=18, decimal_places=3)
    reason = forms.CharField(max_length=255, strip=True)
    start = forms.DateField()
    end = forms.DateField()
    timezone = forms.CharField(max_length=64)


def _page_url(params: dict) -> str:
    return f"{reverse('staff_pricing:index')}?{urlencode(params)}"


@staff_required
def pricing_index(request: HttpRequest) -> HttpResponse:
    form = PeriodForm(request.GET)
    context: dict = {
        "form": form,
        "zones": COMMON_ZONES,
        "presets": presets("staff_pricing:index", form),
        "policy": PricingPolicy.load(),
    }
    if not form.is_valid():
        return render(request, "staff/pricing.html", context, status=400 if request.GET else 200)
    c = form.cleaned_data
    suggestions = pricing.prices_suggest(c["start"], c["end"], timezone=c["timezone"])
    rows = [
        {
            "row": r,
            "reason": pricing.default_reason(r, suggestions) if r.suggested_credits else "",
        }
        for r in suggestions.rows
    ]
    costs_query = urlencode({**form.query(), "window": "day", "idle_policy": "weighted"})
    context.update(
        {
            "suggestions": suggestions,
            "rows": rows,
            "policy": suggestions.policy,
            "below_cost": suggestions.below_cost,
            "applicable": suggestions.applicable,
            "period_query": form.query(),
            "last_day": c["end"] - timedelta(days=1),
            "costs_url": f"{reverse('staff_costs:index')}?{costs_query}",
            "policy_admin_url": reverse(
                "admin:generations_pricingpolicy_change", args=[suggestions.policy.pk]
            ),
        }
    )
    return render(request, "staff/pricing.html", context)


@staff_required
@require_POST
def pricing_apply(request: HttpRequest) -> HttpResponse:
    form = ApplyForm(request.POST)
    back = {k: request.POST.get(k, "") for k in ("start", "end", "timezone")}
    back = {k: v for k, v in back.items() if v}
    if not form.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        messages.error(request, f"Nothing applied: {problems}")
        return redirect(_page_url(back))
    c = form.cleaned_data
    model = get_object_or_404(AIModel, slug=c["model"])
    period = PeriodForm({"start": c["start"], "end": c["end"], "timezone": c["timezone"]})
    if not period.is_valid():
        messages.error(request, "Nothing applied: the period is not valid.")
        return redirect(_page_url(back))
    try:
        suggestions = pricing.prices_suggest(c["start"], c["end"], timezone=c["timezone"])
        previous = suggestions.row(model.slug)
        rate = pricing.price_apply(
            model=model,
            actor=request.user,
            reason=c["reason"],
            suggestions=suggestions,
            expected=to_decimal(c["expected"]),
        )
    except ServiceError as exc:
        messages.warning(request, f"Nothing applied: {exc.detail}")
        return redirect(_page_url(back))
    if rate is None:
        messages.info(
            request, f"{model.slug} already costs {c['expected'].normalize():f} credits: no change."
        )
    else:
        was = previous.current_credits if previous else None
        messages.success(
            request,
            f"{model.slug} now costs {rate.credits.normalize():f} credits per generation"
            + (f" (was {was.normalize():f})." if was is not None else ".")
            + " The change is in its price history.",
        )
    return redirect(_page_url(back) + f"#model-{model.slug}")


app_name = "staff_pricing"

urlpatterns = [
    path("", pricing_index, name="index"),
    path("apply/", pricing_apply, name="apply"),
]
