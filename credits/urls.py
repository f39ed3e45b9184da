"""Web routes of credits (the API's live under /api/v1/)."""

from django.urls import include, path

from credits import views
from credits.billing import urls as billing_urls
from credits.budgets import views as budgets

app_name = "credits"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("ledger/", views.ledger, name="ledger"),
    path("ledger.csv", views.ledger_csv, name="ledger_csv"),
    # Budgets per member, team and API key, and the teams (credits.budgets.views).
    path("budgets/", budgets.budgets, name="budgets"),
    path("budgets/edit/", budgets.budget_edit, name="budget_edit"),
    path("budgets/<int:budget_id>/delete/", budgets.budget_delete, name="budget_delete"),
    path("budgets/teams/", budgets.team_create, name="team_create"),
    path("budgets/teams/<int:team_id>/delete/", budgets.team_delete, name="team_delete"),
    path("budgets/teams/members/", budgets.team_member_add, name="team_member_add"),
    path(
        "budgets/teams/<int:team_id>/members/<int:user_id>/remove/",
        budgets.team_member_remove,
        name="team_member_remove",
    ),
    # Billing (Stripe): the page, its POST actions and the lazily loaded invoices (same
    # namespace: `credits:billing`, `credits:billing_plan`, …).
    path("billing/", include(billing_urls.pages)),
]
