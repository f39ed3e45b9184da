from django.urls import path

from infra_costs.api import views

urlpatterns = [
    path("costs/unit-costs/", views.UnitCostsView.as_view(), name="api-costs-unit-costs"),
    path("costs/pools/", views.PoolsImportView.as_view(), name="api-costs-pools"),
    path("costs/uptime/", views.UptimeImportView.as_view(), name="api-costs-uptime"),
    path("costs/jobs/", views.JobsImportView.as_view(), name="api-costs-jobs"),
]
