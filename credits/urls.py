"""Web routes of credits (the API's live under /api/v1/)."""

from django.urls import path

from credits import billing_views, views

app_name = "credits"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("ledger/", views.ledger, name="ledger"),
    path("ledger.csv", views.ledger_csv, name="ledger_csv"),
    # Billing (Stripe): the page, its POST actions and the lazily loaded invoices.
    path("billing/", billing_views.billing, name="billing"),
    path("billing/invoices/", billing_views.billing_invoices, name="billing_invoices"),
    path("billing/plan/", billing_views.billing_plan, name="billing_plan"),
    path("billing/pack/", billing_views.billing_pack, name="billing_pack"),
    path("billing/portal/", billing_views.billing_portal, name="billing_portal"),
    path("billing/cancel/", billing_views.billing_cancel, name="billing_cancel"),
    path("billing/resume/", billing_views.billing_resume, name="billing_resume"),
    path("billing/auto-top-up/", billing_views.billing_auto_top_up, name="billing_auto_top_up"),
    path("billing/low-balance/", billing_views.billing_low_balance, name="billing_low_balance"),
]
