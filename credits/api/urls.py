from django.urls import path

from credits.api import views
from credits.budgets import api as budgets
from credits.promos import api as promos
from credits.trials import api as trials

urlpatterns = [
    path("balance/", views.BalanceView.as_view(), name="api-balance"),
    path("ledger/", views.LedgerView.as_view(), name="api-ledger"),
    path("quotas/", views.QuotasView.as_view(), name="api-quotas"),
    path("usage/", views.UsageView.as_view(), name="api-usage"),
    path("budgets/", budgets.BudgetListView.as_view(), name="api-budget-list"),
    path("budgets/<int:id>/", budgets.BudgetDetailView.as_view(), name="api-budget-detail"),
    path("promo-codes/redeem/", promos.PromoRedeemView.as_view(), name="api-promo-redeem"),
    path("trial/", trials.TrialView.as_view(), name="api-trial"),
    path("referrals/", trials.ReferralsView.as_view(), name="api-referrals"),
]
