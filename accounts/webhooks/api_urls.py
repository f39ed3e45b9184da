from django.urls import path

from accounts.webhooks import api

urlpatterns = [
    path("endpoints/", api.WebhookEndpointListView.as_view(), name="api-webhook-endpoint-list"),
    path(
        "endpoints/<int:id>/",
        api.WebhookEndpointDetailView.as_view(),
        name="api-webhook-endpoint-detail",
    ),
    path(
        "endpoints/<int:id>/rotate-secret/",
        api.WebhookEndpointRotateView.as_view(),
        name="api-webhook-endpoint-rotate",
    ),
    path(
        "endpoints/<int:id>/test/",
        api.WebhookEndpointTestView.as_view(),
        name="api-webhook-endpoint-test",
    ),
    path(
        "endpoints/<int:id>/deliveries/",
        api.WebhookDeliveryListView.as_view(),
        name="api-webhook-endpoint-deliveries",
    ),
    path(
        "deliveries/<int:id>/resend/",
        api.WebhookDeliveryResendView.as_view(),
        name="api-webhook-delivery-resend",
    ),
]
