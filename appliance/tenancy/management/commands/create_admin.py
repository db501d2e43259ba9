"""python manage.py create_admin USER --password P   (or the password from $APPLIANCE_ADMIN_PASSWORD)

Creates a staff superuser for the console, the Django admin and the admin REST API, or resets that user's password.
"""
from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Create (or update the password of) a staff superuser."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", default=os.environ.get("APPLIANCE_ADMIN_PASSWORD"))
        parser.add_argument("--email", default="")
        parser.add_argument("--token", action="store_true", help="Also print a REST API token on the last line")

    def handle(self, *args, **opts) -> None:
        if not opts["password"]:
            raise CommandError("give --password or set APPLIANCE_ADMIN_PASSWORD")
        User = get_user_model()
        user, created = User.objects.get_or_create(username=opts["username"], defaults={"email": opts["email"]})
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(opts["password"])
        user.save()
        self.stdout.write(f"{'Created' if created else 'Updated'} admin user {user.username}.")
        if opts["token"]:
            from rest_framework.authtoken.models import Token

            token, _ = Token.objects.get_or_create(user=user)
            self.stdout.write("Admin API token (Authorization: Token <token>):")
            self.stdout.write(token.key)
