"""Staff planning pages, mounted at /staff/planning/ (each feature adds its routes here)."""

from django.urls import path

app_name = "planning"

from planning.views import margins as margins_views  # noqa: E402

urlpatterns: list = []

urlpatterns += [
    path("margins/", margins_views.index, name="margins"),
    path(
        "margins/organizations.csv",
        margins_views.organizations_csv,
        name="margins_organizations_csv",
    ),
    path("margins/plans.csv", margins_views.plans_csv, name="margins_plans_csv"),
    path("margins/models.csv", margins_views.models_csv, name="margins_models_csv"),
]

from planning.views import pools as pools_views  # noqa: E402

urlpatterns += [
    path("pools/", pools_views.pools, name="pools"),
]

from planning.views import scenarios as scenarios_views  # noqa: E402

urlpatterns += [
    path("scenarios/", scenarios_views.scenarios, name="scenarios"),
    path("scenarios/compare/", scenarios_views.scenarios_compare, name="scenarios_compare"),
]
