"""Who may use the console: active staff users. Pages redirect to the login; JSON endpoints answer 403.

A viewer (appliance.roles) sees every page but changes nothing: pages that only change things (`changes_required`)
and every POST to a page that also lists things (`viewer_reads_only`) answer 403, and templates hide the buttons
(`can_change` in every template's context).
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.decorators import user_passes_test
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse

from appliance.roles import can_change, is_staff, is_viewer

staff_required = user_passes_test(is_staff, login_url="console:login")


def staff_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_staff(request.user):
            return JsonResponse({"error": "staff login required"}, status=403)
        return view(request, *args, **kwargs)

    return wrapped


def viewer_reads_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff only; a viewer may GET the page, and its POSTs answer 403."""

    @staff_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in ("GET", "HEAD") and not can_change(request.user):
            raise PermissionDenied("A read-only (viewer) account cannot change anything.")
        return view(request, *args, **kwargs)

    return wrapped


def changes_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Staff who may change things only: a page whose only purpose is a change answers a viewer 403."""

    @staff_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not can_change(request.user):
            raise PermissionDenied("A read-only (viewer) account cannot change anything.")
        return view(request, *args, **kwargs)

    return wrapped


def roles(request: HttpRequest) -> dict[str, bool]:
    """Template context: whether the user may change things (buttons and forms are shown only then)."""
    user = getattr(request, "user", None)
    return {"can_change": can_change(user), "is_viewer": is_viewer(user)}
