"""Forms: every field bounded, every refusal a sentence saying what to do."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError

from panel.models import Host, lxd_name_validator

HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                      r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")  # fmt: skip
SOCKET_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,254}$")


def clean_endpoint(value: str) -> str:
    """A unix socket path, or https://address[:port] with nothing else in it."""
    value = value.strip()
    if value.startswith("/"):
        if not SOCKET_PATH.match(value) or "/../" in f"{value}/" or "//" in value:
            raise ValidationError(
                "A socket path is absolute and uses only letters, digits, '.', '_', '-' and '/', "
                "for example /var/lib/lxd/unix.socket."
            )
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationError("That URL's port is not a number between 1 and 65535.") from None
    if parts.scheme != "https":
        raise ValidationError(
            "Use https://address:port (LXD's remote API is HTTPS only) or a unix socket path."
        )
    if (
        parts.username
        or parts.password
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValidationError("Give only https://address:port, with no user, path or query.")
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.match(host):
            raise ValidationError(f"{host!r} is not a valid host name or IP address.") from None
    bracketed = f"[{host}]" if ":" in host else host
    return f"https://{bracketed}:{port or 8443}"


class AddHostForm(forms.Form):
    name = forms.CharField(
        max_length=63,
        validators=[lxd_name_validator],
        help_text="A short name, as you would give `lxc remote add`.",
    )
    endpoint = forms.CharField(
        max_length=255,
        help_text="https://address:8443, or a local socket such as /var/lib/lxd/unix.socket.",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        existing = Host.objects.filter(name__iexact=name).first()
        if existing is not None:
            what = "a host being added" if existing.status == Host.Status.ENROLLING else "a host"
            raise ValidationError(f"{existing.name!r} is already the name of {what}.")
        return name

    def clean_endpoint(self) -> str:
        endpoint = clean_endpoint(self.cleaned_data["endpoint"])
        existing = Host.objects.filter(endpoint=endpoint).first()
        if existing is not None:
            raise ValidationError(f"{endpoint} is already registered as {existing.name!r}.")
        return endpoint


class ConfirmHostForm(forms.Form):
    fingerprint = forms.CharField(max_length=64, min_length=64, widget=forms.HiddenInput)
    secret = forms.CharField(
        label="Trust password or token",
        max_length=4096,
        strip=True,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="Used once to make the server trust the panel; never stored.",
    )

    def __init__(self, *args, host: Host, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host = host

    def clean_fingerprint(self) -> str:
        fingerprint = self.cleaned_data["fingerprint"]
        if fingerprint != self.host.offered_fingerprint:
            raise ValidationError(
                "The server's certificate changed since it was shown to you. Nothing was "
                "trusted; fetch it again and compare the new fingerprint."
            )
        return fingerprint
