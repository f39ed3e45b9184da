"""Staff report pages, mounted at /staff/costs/ (the API's routes are in infra_costs/api/)."""

from django.urls import path

from infra_costs import views

app_name = "staff_costs"

urlpatterns = [
    path("", views.unit_costs, name="index"),
    path("models.csv", views.models_csv, name="models_csv"),
    path("pools.csv", views.pools_csv, name="pools_csv"),
]
