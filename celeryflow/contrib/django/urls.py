"""``path("flows/", include("celeryflow.contrib.django.urls"))`` → ``flows/<id>/`` (JSON state)."""

from __future__ import annotations

from django.urls import path

from celeryflow.contrib.django.views import flow_status

app_name = "celeryflow"
urlpatterns = [
    path("<str:flow_id>/", flow_status, name="flow-status"),
]
