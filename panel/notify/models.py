"""What each user wants to hear about failures, and where."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def new_secret() -> str:
    return secrets.token_hex(32)


class NotificationChoice(models.Model):
    """One user's notification choices: e-mail and/or a signed webhook, for which failures."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_choice"
    )
    email = models.BooleanField(default=False, help_text="To the address of the user's account.")
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=64, default=new_secret)
    mine = models.BooleanField(default=True, help_text="Operations I started that fail.")
    scheduled = models.BooleanField(
        default=True, help_text="Scheduled stateful snapshots that fail."
    )
    everything = models.BooleanField(default=False, help_text="Every operation that fails.")
    new_groups_only = models.BooleanField(
        default=False,
        help_text="Of those, only a failure whose cause is new (panel/failures/), or a cause "
        "marked fixed failing again.",
    )

    def __str__(self) -> str:
        return f"notifications of {self.user}"

    @property
    def has_channel(self) -> bool:
        return (self.email and bool(self.user.email)) or bool(self.webhook_url)
