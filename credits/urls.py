"""Web routes of credits (the API's live under /api/v1/)."""

from django.urls import path

from credits import views

app_name = "credits"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("ledger/", views.ledger, name="ledger"),
    path("ledger.csv", views.ledger_csv, name="ledger_csv"),
]
