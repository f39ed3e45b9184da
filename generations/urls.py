"""Web routes of generations (the API's live in generations/api/urls.py)."""

from django.urls import path

from generations import views

app_name = "generations"

urlpatterns = [
    path("", views.generate, name="generate"),
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job"),
    path("jobs/<uuid:job_id>/status/", views.job_status, name="job_status"),
    path("jobs/<uuid:job_id>/cancel/", views.job_cancel, name="job_cancel"),
]
