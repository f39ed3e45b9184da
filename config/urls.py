from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.api.views import ProblemTypeView, healthz

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("credits.api.urls")),
    path("", include("generations.api.urls")),
    path("", include("infra_costs.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI's script is served from a URL of its own (the split view), as the
    # Content-Security-Policy requires; its page keeps one inline <style>, allowed here only.
    path(
        "api/docs/",
        csp_update({"style-src": [UNSAFE_INLINE]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
        name="api-docs",
    ),
    path("api/problems/<slug:code>/", ProblemTypeView.as_view(), name="api-problem"),
    path("api/v1/", include(api_v1)),
    path("credits/", include("credits.urls")),
    path("stripe/", include("credits.billing.urls")),
    path("generate/", include("generations.urls")),
    path("staff/costs/", include("infra_costs.urls")),
    path("staff/pricing/", include("generations.staff_views")),
    # Stripe Checkout/Portal return URLs and emails point here.
    path(
        "billing/",
        RedirectView.as_view(pattern_name="credits:billing", query_string=True),
        name="billing",
    ),
    path("", include("accounts.urls")),
]
