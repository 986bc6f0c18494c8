"""Who did what (the audit trail) and the users' API tokens."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """Who did what, on which object, when, from where, and how it ended. Kept forever, and
    readable when the user or the object is gone (names are copied, not only linked)."""

    class Outcome(models.TextChoices):
        OK = "ok", "Done"
        REFUSED = "refused", "Refused"
        FORBIDDEN = "forbidden", "Forbidden"
        FAILED = "failed", "Failed"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    address = models.GenericIPAddressField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome, db_index=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'anonymous'} {self.action}"


def no_control_characters(value: str) -> None:
    """Refuse invisible and bidirectional control characters (U+202E would make a token
    named "\u202etxt.exe" read as "exe.txt"), and other control and format characters."""
    found = sorted({f"U+{ord(char):04X}" for char in value if unicodedata.category(char) in
                    ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")})  # fmt: skip
    if found:
        raise ValidationError(
            f"Use visible characters only: this name holds {', '.join(found)} (invisible or "
            "direction-changing characters)."
        )


class ApiToken(models.Model):
    """A user's token for the JSON API. Only its SHA-256 is stored; the token itself is
    shown once, when it is made. It acts with its user's role, within its scope, until it
    expires, is revoked, or its user's password changes or the user is deactivated."""

    class Scope(models.TextChoices):
        READ = "read", "Read only (GET)"
        WRITE = "write", "Read and act, as its user's role allows"

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, validators=[no_control_characters])
    prefix = models.CharField(
        max_length=12, help_text="The token's first characters, to tell it apart."
    )
    digest = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=8, choices=Scope, default=Scope.WRITE)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=100, blank=True)
    password_stamp = models.CharField(
        max_length=64, blank=True, help_text="Its user's password, hashed again, when issued."
    )

    def __str__(self) -> str:
        return f"{self.user} / {self.name} ({self.prefix}…)"

    def allows(self, method: str) -> bool:
        """A read-only token may only read (GET, HEAD, OPTIONS)."""
        return self.scope == self.Scope.WRITE or method.upper() in ("GET", "HEAD", "OPTIONS")

    @property
    def state(self) -> str:
        """active, expired, or revoked (and why), as the token list says it."""
        if self.revoked_at is not None:
            return f"revoked {self.revoked_at:%Y-%m-%d %H:%M}" + (
                f" ({self.revoked_reason})" if self.revoked_reason else ""
            )
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return f"expired {self.expires_at:%Y-%m-%d %H:%M}"
        return "active"
