"""Mounted at /stripe/ by config/urls.py."""

from django.urls import path

from credits.billing.views import stripe_webhook

urlpatterns = [
    path("webhook/", stripe_webhook, name="stripe-webhook"),
]
