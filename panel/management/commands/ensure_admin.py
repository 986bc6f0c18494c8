"""Create the first administrator with a generated password, printed once.

Run by bin/panel on every start; does nothing once any superuser exists, so the password is
shown exactly once and never stored anywhere but as Django's hash.
"""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create user 'admin' with a generated password if no superuser exists yet."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            self.stdout.write("An administrator already exists; no password to show.")
            return
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(
            self.style.SUCCESS(f"Created administrator '{username}' with password: {password}")
        )
        self.stdout.write("This password is shown once. Change it after logging in.")
