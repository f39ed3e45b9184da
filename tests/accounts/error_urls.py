"""The site's URLconf plus a view that fails, for the custom 500 page test."""

from django.urls import path

from config.urls import urlpatterns as site_urlpatterns


def boom(request):
    raise RuntimeError("an unexpected failure")


urlpatterns = [path("boom/", boom), *site_urlpatterns]
