from django.urls import path, re_path

from operations.api import views

urlpatterns = [
    path("exports/", views.ExportIndexView.as_view(), name="api-exports"),
    re_path(
        r"^exports/(?P<dataset>[a-z0-9-]+)\.(?P<fmt>csv|parquet)$",
        views.ExportView.as_view(),
        name="api-export-file",
    ),
    path("exports/<slug:dataset>", views.ExportByQueryView.as_view(), name="api-export"),
]
