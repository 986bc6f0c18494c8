"""API tokens from a shell: `api_token create USER NAME [--read-only] [--expires-in DAYS]`
(prints the token once), `api_token revoke PREFIX`, `api_token list [USER]` (docs/api.md)."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from panel.accounts.tokens import issue_token, revoke
from panel.models import ApiToken


class Command(BaseCommand):
    help = "Create, revoke and list API tokens."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Make a token for USER; printed once.")
        create.add_argument("user")
        create.add_argument("name")
        create.add_argument(
            "--read-only", action="store_true", help="GET requests only, whatever the role."
        )
        create.add_argument(
            "--expires-in",
            type=int,
            metavar="DAYS",
            help="Expires in DAYS days (default never).",
        )
        revoke = actions.add_parser("revoke", help="Revoke the token starting with PREFIX.")
        revoke.add_argument("prefix")
        listing = actions.add_parser("list", help="Every token, or USER's.")
        listing.add_argument("user", nargs="?")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, action)(**options)

    def create(self, user: str, name: str, read_only: bool, expires_in: int | None, **options):
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"There is no user named {user!r}.")
        if not 1 <= len(name) <= 100:
            raise CommandError("A token's name has 1 to 100 characters.")
        if expires_in is not None and not 1 <= expires_in <= 3650:
            raise CommandError("--expires-in is a number of days from 1 to 3650.")
        expires_at = timezone.now() + dt.timedelta(days=expires_in) if expires_in else None
        scope = ApiToken.Scope.READ if read_only else ApiToken.Scope.WRITE
        try:
            row, token = issue_token(owner, name, scope, expires_at)
        except ValidationError as refusal:
            raise CommandError(refusal.messages[0]) from None
        self.stdout.write(token)
        self.stderr.write(
            f"Token {row.name!r} for {owner}: shown this once, only its hash is kept."
        )

    def revoke(self, prefix: str, **options) -> None:
        matches = list(
            ApiToken.objects.filter(
                # the whole token, or any leading part of it that is shown
                prefix__startswith=prefix[: ApiToken._meta.get_field("prefix").max_length],
                revoked_at__isnull=True,
            )
        )
        if not matches:
            raise CommandError(f"No active token starts with {prefix!r}.")
        if len(matches) > 1:
            names = ", ".join(f"{t.user}/{t.name}" for t in matches)
            raise CommandError(
                f"{len(matches)} active tokens start with {prefix!r} ({names}): "
                "revoke the right one in the admin or on its owner's page."
            )
        revoke(ApiToken.objects.filter(pk=matches[0].pk), "by an administrator (api_token)")
        self.stdout.write(f"Revoked {matches[0]}.")

    def list(self, user: str | None = None, **options) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "created_at")
        if user:
            tokens = tokens.filter(user__username=user)
        for token in tokens:
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            if token.last_used_from:
                used += f" from {token.last_used_from}"
            expires = f"{token.expires_at:%Y-%m-%d}" if token.expires_at else "never"
            self.stdout.write(
                f"{token.prefix}\t{token.user}\t{token.name}\t{token.scope}\t"
                f"created {token.created_at:%Y-%m-%d}\texpires {expires}\tused {used}\t"
                f"{token.state}"
            )
