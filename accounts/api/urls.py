from django.urls import include, path

from accounts.api import teams, views

urlpatterns = [
    path("organization/", views.OrganizationView.as_view(), name="api-organization"),
    path("api-keys/", views.APIKeyListView.as_view(), name="api-api-key-list"),
    path("webhooks/", include("accounts.webhooks.api_urls")),
    path("teams/", teams.TeamListView.as_view(), name="api-team-list"),
    path("teams/<slug:slug>/", teams.TeamDetailView.as_view(), name="api-team-detail"),
    path(
        "teams/<slug:slug>/members/",
        teams.TeamMemberListView.as_view(),
        name="api-team-members",
    ),
    path(
        "teams/<slug:slug>/members/<int:user_id>/",
        teams.TeamMemberDetailView.as_view(),
        name="api-team-member-detail",
    ),
]
