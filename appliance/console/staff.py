"""Who may use the console: active staff users. Pages redirect to the login; JSON endpoints answer 403."""
from __future__ import annotations

from functools import wraps
from typing import Callable

from django.contrib.auth.decorators import user_passes_test
from django.http import HttpRequest, HttpResponse, JsonResponse


def is_staff(user) -> bool:
    return user.is_active and user.is_staff


staff_required = user_passes_test(is_staff, login_url="console:login")


def staff_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_staff(request.user):
            return JsonResponse({"error": "staff login required"}, status=403)
        return view(request, *args, **kwargs)

    return wrapped
