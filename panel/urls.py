from django.contrib import admin
from django.urls import include, path

from panel import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("hosts/add-local/", views.add_local_host, name="add-local-host"),
    path("healthz", views.health, name="health"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
