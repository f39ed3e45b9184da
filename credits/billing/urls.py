"""Billing routes, mounted twice:

* ``pages`` — the billing page, its POST actions and the lazily loaded invoices; included under
  /credits/billing/ by ``credits/urls.py`` in the ``credits`` namespace (``credits:billing``,
  ``credits:billing_plan``, …);
* ``urlpatterns`` — the Stripe webhook, mounted at /stripe/ by ``config/urls.py``
  (``stripe-webhook``).
"""

from django.urls import path

from credits.billing import views
from credits.promos import views as promos
from credits.trials import views as trials
from credits.velocity import views as velocity

pages = [
    path("", views.billing, name="billing"),
    path("invoices/", views.billing_invoices, name="billing_invoices"),
    path("plan/", views.billing_plan, name="billing_plan"),
    path("pack/", views.billing_pack, name="billing_pack"),
    path("portal/", views.billing_portal, name="billing_portal"),
    path("cancel/", views.billing_cancel, name="billing_cancel"),
    path("resume/", views.billing_resume, name="billing_resume"),
    path("auto-top-up/", views.billing_auto_top_up, name="billing_auto_top_up"),
    path("low-balance/", views.billing_low_balance, name="billing_low_balance"),
    path("promo/", promos.promo_redeem, name="billing_promo"),
    path("trial/", trials.trial_start, name="billing_trial"),
    path("trial/end/", trials.trial_end, name="billing_trial_end"),
    path("velocity/resume/", velocity.velocity_resume, name="billing_velocity_resume"),
]

urlpatterns = [
    path("webhook/", views.stripe_webhook, name="stripe-webhook"),
]
