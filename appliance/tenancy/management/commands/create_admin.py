"""python manage.py create_admin USER --password P   (or the password from $APPLIANCE_ADMIN_PASSWORD)

Creates a staff superuser for the console, the Django admin and the admin REST API, or resets that user's password.
With --viewer, a read-only staff user instead (appliance.roles): sees everything, changes nothing.
"""
from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.roles import VIEWER_GROUP, make_viewer


class Command(BaseCommand):
    help = "Create (or update the password of) a staff superuser, or with --viewer a read-only staff user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", default=os.environ.get("APPLIANCE_ADMIN_PASSWORD"))
        parser.add_argument("--email", default="")
        parser.add_argument("--token", action="store_true", help="Also print a REST API token on the last line")
        parser.add_argument("--viewer", action="store_true",
                            help="A read-only staff user (sees everything, changes nothing) instead of a superuser")

    def handle(self, *args, **opts) -> None:
        if not opts["password"]:
            raise CommandError("give --password or set APPLIANCE_ADMIN_PASSWORD")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=opts["username"], defaults={"email": opts["email"]})
        user.is_staff = user.is_active = True
        user.is_superuser = not opts["viewer"]
        user.set_password(opts["password"])
        user.save()
        if opts["viewer"]:
            make_viewer(user)
        else:
            user.groups.remove(*user.groups.filter(name=VIEWER_GROUP))
        role = "viewer (read-only)" if opts["viewer"] else "admin"
        self.stdout.write(f"{'Created' if created else 'Updated'} {role} user {user.username}.")
        if opts["token"]:
            from rest_framework.authtoken.models import Token

            token, _ = Token.objects.get_or_create(user=user)
            self.stdout.write("Admin API token (Authorization: Token <token>):")
            self.stdout.write(token.key)
