"""API tokens: issue, authenticate, revoke. Only a token's SHA-256 is stored; the token is
shown once, when it is made, and acts with its user's role, within its scope (read-only
tokens only read), until it expires or is revoked. Changing the user's password or
deactivating the user revokes every token of theirs.

Any API layer authenticates with `authenticate(request)` and then asks `token.allows(method)`;
everything a token may do is decided here and in ApiToken (panel/accounts/models.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from panel.accounts.addresses import client_address
from panel.accounts.models import ApiToken, no_control_characters

if TYPE_CHECKING:
    from django.contrib.auth.models import User

TOKEN_PREFIX = "lxdp_"  # noqa: S105 (a public marker, not a secret)


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_stamp(user) -> str:
    """The user's password hash, hashed again: a token issued under another password no
    longer matches, however the password was changed (a form, the admin, `changepassword`,
    a bulk update that sent no signal)."""
    return hashlib.sha256(user.password.encode()).hexdigest()


def issue_token(
    user, name: str, scope: str = ApiToken.Scope.WRITE, expires_at: dt.datetime | None = None
) -> tuple[ApiToken, str]:
    """A new token for the user: the row keeps its digest; the token is returned once.
    Raises ValidationError for a name with invisible or direction-changing characters."""
    no_control_characters(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=token[: ApiToken._meta.get_field("prefix").max_length],
        digest=digest_of(token),
        scope=scope,
        expires_at=expires_at,
        password_stamp=password_stamp(user),
    )
    return row, token


def authenticate(request: HttpRequest) -> tuple[User, ApiToken] | None:
    """(user, token) for the request's valid bearer token, or None: unknown, revoked,
    expired, issued under an old password, or its user inactive. Records the use."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    found = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest_of(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    now = timezone.now()
    if found is None or (found.expires_at is not None and found.expires_at <= now):
        return None
    if found.password_stamp != password_stamp(found.user):
        revoke(ApiToken.objects.filter(pk=found.pk), "password changed")
        return None
    # The client's address, not a TLS proxy's (PANEL_TRUSTED_PROXIES), as the audit trail has it.
    address = client_address(request)
    ApiToken.objects.filter(pk=found.pk).update(last_used_at=now, last_used_from=address)
    return found.user, found


def revoke(tokens, reason: str) -> int:
    """Revoke the still-active tokens among `tokens` (a queryset), saying why."""
    return tokens.filter(revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason=reason[:100]
    )


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def remember_credentials(sender, instance, update_fields=None, **kwargs) -> None:
    """Before a user is saved, what its password and activity were (a login's save of
    `last_login` alone is skipped)."""
    if instance.pk is None or (update_fields and not {"password", "is_active"} & update_fields):
        instance._credentials_before = None
        return
    instance._credentials_before = (
        sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def revoke_tokens_on_credentials_change(sender, instance, **kwargs) -> None:
    before = getattr(instance, "_credentials_before", None)
    if before is None:
        return
    if before["password"] != instance.password:
        revoke(instance.api_tokens.all(), "password changed")
    elif before["is_active"] and not instance.is_active:
        revoke(instance.api_tokens.all(), "user deactivated")
