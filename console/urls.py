from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views
from .pages import AREAS as PAGE_AREAS

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),  # users and groups; Berth's rows read-only (console/admin.py)
    path("", views.container_list, name="container-list"),
    *[path("", include(f"console.pages.{area}")) for area in PAGE_AREAS],
    path("containers/bulk/", views.container_bulk_action, name="container-bulk-action"),
    path("containers/<str:container_id>/", views.container_detail, name="container-detail"),
    path("containers/<str:container_id>/<str:action>/", views.container_action, name="container-action"),
]
