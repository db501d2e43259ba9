"""Staff roles. An administrator (staff) sees and changes everything; a viewer (staff, in the "viewer" group) sees
everything and changes nothing: in the admin REST API (403 on every write), the console (no mutating forms; POSTs
answer 403) and the Django admin (view permissions only).

    python manage.py create_admin alice --password ... --viewer
"""
from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEWER_GROUP = "viewer"


def is_staff(user) -> bool:
    return bool(user and user.is_active and user.is_staff)


def is_viewer(user) -> bool:
    """A read-only staff user. A superuser is never a viewer."""
    if not is_staff(user) or user.is_superuser:
        return False
    cached = getattr(user, "_is_viewer", None)
    if cached is None:
        cached = user._is_viewer = user.groups.filter(name=VIEWER_GROUP).exists()
    return cached


def can_change(user) -> bool:
    """Whether a staff user may create, change or delete anything."""
    return is_staff(user) and not is_viewer(user)


def viewer_group():
    """The viewer group, holding every model's view permission (so the Django admin is read-only for it too)."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=VIEWER_GROUP)
    group.permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return group


def make_viewer(user) -> None:
    """Make `user` a read-only staff user: staff, not superuser, in the viewer group and in no other group."""
    user.is_staff, user.is_superuser = True, False
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.set([viewer_group()])
    user.user_permissions.clear()


class StaffPermission(BasePermission):
    """Staff may read; only staff who are not viewers may write."""

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS or not is_staff(request.user):
            return is_staff(request.user)
        self.message = "A read-only (viewer) account cannot change anything."
        return can_change(request.user)
