from django.urls import include, path

from accounts.api import views

urlpatterns = [
    path("organization/", views.OrganizationView.as_view(), name="api-organization"),
    path("api-keys/", views.APIKeyListView.as_view(), name="api-api-key-list"),
    path("webhooks/", include("accounts.webhooks.api_urls")),
]
