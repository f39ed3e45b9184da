from django.urls import path

from credits.api import views

urlpatterns = [
    path("balance/", views.BalanceView.as_view(), name="api-balance"),
    path("ledger/", views.LedgerView.as_view(), name="api-ledger"),
    path("quotas/", views.QuotasView.as_view(), name="api-quotas"),
    path("usage/", views.UsageView.as_view(), name="api-usage"),
]
