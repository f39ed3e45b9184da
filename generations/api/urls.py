from django.urls import path

from generations.api import views

urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="api-model-list"),
    path("generations/", views.GenerationListCreateView.as_view(), name="api-generation-list"),
    path(
        "generations/<str:id>/", views.GenerationDetailView.as_view(), name="api-generation-detail"
    ),
    path(
        "generations/<str:id>/cancel/",
        views.GenerationCancelView.as_view(),
        name="api-generation-cancel",
    ),
]
