"""Web routes of credits (the API's live under /api/v1/)."""

from django.urls import include, path

from credits import views
from credits.billing import urls as billing_urls

app_name = "credits"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("ledger/", views.ledger, name="ledger"),
    path("ledger.csv", views.ledger_csv, name="ledger_csv"),
    # Billing (Stripe): the page, its POST actions and the lazily loaded invoices (same
    # namespace: `credits:billing`, `credits:billing_plan`, …).
    path("billing/", include(billing_urls.pages)),
]
