from django.urls import path

from generations.api import views
from generations.api.output_views import GenerationOutputView
from generations.metering.api import UsageEventsView

urlpatterns = [
    path("usage-events/", UsageEventsView.as_view(), name="api-usage-events"),
    path("models/", views.ModelListView.as_view(), name="api-model-list"),
    path("generations/", views.GenerationListCreateView.as_view(), name="api-generation-list"),
    path("generations/quote/", views.GenerationQuoteView.as_view(), name="api-generation-quote"),
    path(
        "generations/<str:id>/", views.GenerationDetailView.as_view(), name="api-generation-detail"
    ),
    path(
        "generations/<str:id>/output/<str:filename>",
        GenerationOutputView.as_view(),
        name="api-generation-output",
    ),
    path(
        "generations/<str:id>/cancel/",
        views.GenerationCancelView.as_view(),
        name="api-generation-cancel",
    ),
]
