"""API tokens from a shell: `api_token create USER NAME` (prints the token once),
`api_token revoke PREFIX`, `api_token list [USER]` (docs/api.md)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from panel.api import issue_token
from panel.models import ApiToken


class Command(BaseCommand):
    help = "Create, revoke and list API tokens."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Make a token for USER; printed once.")
        create.add_argument("user")
        create.add_argument("name")
        revoke = actions.add_parser("revoke", help="Revoke the token starting with PREFIX.")
        revoke.add_argument("prefix")
        listing = actions.add_parser("list", help="Every token, or USER's.")
        listing.add_argument("user", nargs="?")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, action)(**options)

    def create(self, user: str, name: str, **options) -> None:
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"There is no user named {user!r}.")
        if not 1 <= len(name) <= 100:
            raise CommandError("A token's name has 1 to 100 characters.")
        row, token = issue_token(owner, name)
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
        matches[0].revoked_at = timezone.now()
        matches[0].save(update_fields=["revoked_at"])
        self.stdout.write(f"Revoked {matches[0]}.")

    def list(self, user: str | None = None, **options) -> None:
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "created_at")
        if user:
            tokens = tokens.filter(user__username=user)
        for token in tokens:
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
            self.stdout.write(
                f"{token.prefix}\t{token.user}\t{token.name}\t"
                f"created {token.created_at:%Y-%m-%d}\tused {used}\t{state}"
            )
