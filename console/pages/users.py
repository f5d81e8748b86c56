"""The users page, for admins: who may sign in to the console, and with which role.

An admin creates an account with a role and a password, changes a role,
deactivates an account (it can no longer sign in; its name stays in the
audit log). Each change is an operation like any other ("user.create",
"user.role", "user.deactivate"): recorded with who made it and from where,
refused and recorded for anyone but an admin. The Django admin manages the
same accounts.
"""

from __future__ import annotations

from functools import partial

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from runtime.errors import Conflict, InvalidValue

from .. import operations, roles
from . import common

ROLE_CHOICES = [(role, role) for role in roles.ROLES]


# --- the changes (the rules: who may, what is kept) ----------------------------------------------------


def create_user(username: str, password: str, role: str, by, source: str = "web"):
    """A new account with ``role``; a name taken already is a Conflict."""
    User = get_user_model()
    with operations.operation("user.create", by, source, name=username, detail={"role": role}) as operation:
        if User.objects.filter(username=username).exists():
            raise Conflict(f"a user named {username} exists already")
        user = User.objects.create_user(username, password=password)
        roles.grant(user, role)
        operation.target_id = str(user.pk)
    return user


def change_role(user, role: str, by, source: str = "web") -> None:
    with operations.operation("user.role", by, source, name=user.get_username(),
                              detail={"from": roles.role_of(user), "to": role}) as operation:
        operation.target_id = str(user.pk)
        _not_oneself(user, by, "change your own role")
        if role not in roles.ROLES:
            raise InvalidValue("role", f"unknown role {role!r}; one of {', '.join(roles.ROLES)}")
        roles.grant(user, role)


def deactivate_user(user, by, source: str = "web") -> None:
    """The account can no longer sign in (its sessions end with it); its rows keep its name."""
    with operations.operation("user.deactivate", by, source, name=user.get_username()) as operation:
        operation.target_id = str(user.pk)
        _not_oneself(user, by, "deactivate yourself")
        user.is_active = False
        user.save(update_fields=["is_active"])


def _not_oneself(user, by, what: str) -> None:
    # An admin who demotes or locks out themselves may leave nobody to undo it.
    if by is not None and user.pk == by.pk:
        raise Conflict(f"you cannot {what}: ask another admin")


# --- the page ----------------------------------------------------------------------------------------------


class UserForm(forms.Form):
    # The User model's own rule (letters, digits and @.+-_): create_user does not check it.
    username = forms.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=roles.VIEWER)


def _rows() -> list[dict]:
    users = get_user_model().objects.order_by("username").prefetch_related("groups")
    return [{"user": user, "role": roles.role_of(user), "roles": roles.ROLES} for user in users]


def _render(request, form=None, status=200):
    return render(request, "users.html", {"rows": _rows(), "form": form or UserForm()}, status=status)


def _get_user(user_id: int):
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise Http404("No such user")
    return user


def _refusal(request, action: str, name: str = ""):
    """403 for anyone but an admin, recorded as a failed operation for a change; else None."""
    page = partial(render, request, "refused.html")
    if request.method == "POST":
        return common.refusal(request, action, page, name=name)
    try:
        roles.check(request.user, action)
    except roles.PermissionDenied as error:
        return common.refused(request, error, page)
    return None


@login_required
def user_list(request):
    if refused := _refusal(request, "user.list"):
        return refused
    return _render(request)


@login_required
@require_POST
def user_create(request):
    if refused := _refusal(request, "user.create", request.POST.get("username", "")):
        return refused
    form = UserForm(request.POST)
    if not form.is_valid():
        return _render(request, form, status=400)
    data = form.cleaned_data
    try:
        create_user(data["username"], data["password"], data["role"], by=request.user)
    except Conflict as error:
        form.add_error("username", str(error))
        return _render(request, form, status=409)
    messages.success(request, f"Created {data['username']} ({data['role']}).")
    return redirect("user-list")


@login_required
@require_POST
def user_role(request, user_id: int):
    user = _get_user(user_id)
    if refused := _refusal(request, "user.role", user.get_username()):
        return refused
    role = request.POST.get("role", "")
    try:
        change_role(user, role, by=request.user)
    except (Conflict, InvalidValue) as error:
        messages.error(request, str(error))
        return _render(request, status=400 if isinstance(error, InvalidValue) else 409)
    messages.success(request, f"{user.get_username()} is now {role}.")
    return redirect("user-list")


@login_required
@require_POST
def user_deactivate(request, user_id: int):
    user = _get_user(user_id)
    if refused := _refusal(request, "user.deactivate", user.get_username()):
        return refused
    try:
        deactivate_user(user, by=request.user)
    except Conflict as error:
        messages.error(request, str(error))
        return _render(request, status=409)
    messages.success(request, f"Deactivated {user.get_username()}.")
    return redirect("user-list")


urlpatterns = [
    path("users/", user_list, name="user-list"),
    path("users/create/", user_create, name="user-create"),
    path("users/<int:user_id>/role/", user_role, name="user-role"),
    path("users/<int:user_id>/deactivate/", user_deactivate, name="user-deactivate"),
]
websocket_urlpatterns = []
