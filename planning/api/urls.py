from django.urls import path

from planning.api import views

urlpatterns = [
    path(
        "planning/scenarios/",
        views.ScenarioListCreateView.as_view(),
        name="api-planning-scenario-list",
    ),
    path(
        "planning/scenarios/evaluate/",
        views.ScenarioEvaluateView.as_view(),
        name="api-planning-scenario-evaluate",
    ),
    path(
        "planning/scenarios/<int:pk>/",
        views.ScenarioDetailView.as_view(),
        name="api-planning-scenario-detail",
    ),
]
