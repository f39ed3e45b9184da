from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config.api.views import ProblemTypeView, healthz


@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico whatever the page links: send them to the SVG icon (its
    static URL, hashed in production, is resolved per request)."""
    return HttpResponseRedirect(static("favicon.svg"))


api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("credits.api.urls")),
    path("", include("generations.api.urls")),
    path("", include("infra_costs.api.urls")),
    path("", include("planning.api.urls")),
    path("", include("operations.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", include("operations.urls_metrics")),
    path("favicon.ico", favicon, name="favicon"),
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
    path("staff/", include("operations.urls_staff")),
    path("staff/costs/", include("infra_costs.urls")),
    path("staff/fleet/", include("operations.urls_fleet")),
    path("staff/planning/", include("planning.urls")),
    path("staff/pricing/", include("generations.staff_views")),
    path("staff/contracts/", include("generations.overrides.staff_views")),
    # Stripe Checkout/Portal return URLs and emails point here.
    path(
        "billing/",
        RedirectView.as_view(pattern_name="credits:billing", query_string=True),
        name="billing",
    ),
    path("", include("accounts.urls")),
]
