"""Staff report pages, mounted at /staff/costs/ (the API's routes are in infra_costs/api/)."""

from django.urls import path

from infra_costs import capacity_views, views

app_name = "staff_costs"

urlpatterns = [
    path("", views.unit_costs, name="index"),
    path("models.csv", views.models_csv, name="models_csv"),
    path("pools.csv", views.pools_csv, name="pools_csv"),
    path("stages.csv", views.stages_csv, name="stages_csv"),
    path("capacity/", capacity_views.capacity_page, name="capacity"),
    path("capacity/<slug:slug>/apply/", capacity_views.capacity_apply, name="capacity_apply"),
]
