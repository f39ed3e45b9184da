"""Web pages of outbound webhooks (`/webhooks/…`)."""

from django.urls import path

from accounts.webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("<int:endpoint_id>/", views.endpoint_detail, name="detail"),
    path("<int:endpoint_id>/rotate/", views.endpoint_rotate, name="rotate"),
    path("<int:endpoint_id>/test/", views.endpoint_test, name="test"),
    path("<int:endpoint_id>/enabled/", views.endpoint_enabled, name="enabled"),
    path("<int:endpoint_id>/delete/", views.endpoint_delete, name="delete"),
    path("deliveries/<int:delivery_id>/resend/", views.delivery_resend, name="resend"),
]
