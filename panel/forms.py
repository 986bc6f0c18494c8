"""Forms: every field bounded, every refusal a sentence saying what to do."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils import timezone

from panel.models import Host, Instance, Operation, lxd_name_validator

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
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


SNAPSHOT_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$",
    "Use 1 to 63 letters, digits, '.', '_' and '-', starting with a letter or digit.",
)
EXPIRY_CHOICES = [
    ("", "Never"),
    ("1h", "In 1 hour"),
    ("1d", "In 1 day"),
    ("7d", "In 7 days"),
    ("30d", "In 30 days"),
]
EXPIRY_DELTAS = {
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}


class OperationForm(forms.Form):
    """What the container page posts: the kind, and the few parameters some kinds take."""

    kind = forms.ChoiceField(choices=Operation.Kind.choices)
    snapshot = forms.CharField(max_length=63, required=False, validators=[SNAPSHOT_NAME])
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, required=False)
    restore_mode = forms.ChoiceField(
        choices=[("stateful", "Running state and filesystem"), ("filesystem", "Filesystem only")],
        required=False,
    )

    def __init__(self, *args, instance: Instance, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance

    def clean(self) -> dict:
        data = super().clean()
        kind = data.get("kind")
        if kind is None:
            return data
        refusal = precondition_refusal(self.instance, kind, data.get("snapshot") or "")
        if refusal:
            raise ValidationError(refusal)
        return data

    def params(self) -> dict:
        """The operation's parameters, complete (defaults filled in)."""
        data, kind = self.cleaned_data, self.cleaned_data["kind"]
        if kind in (Operation.Kind.SNAPSHOT, Operation.Kind.STATEFUL_SNAPSHOT):
            name = data["snapshot"] or f"snap-{timezone.now():%Y%m%d-%H%M%S}"
            params = {"snapshot": name}
            if data.get("expires_in"):
                params["expires_at"] = (
                    timezone.now() + EXPIRY_DELTAS[data["expires_in"]]
                ).isoformat()
            return params
        if kind == Operation.Kind.RESTORE:
            snapshot = self.instance.snapshots.get(name=data["snapshot"])
            stateful = snapshot.stateful and data.get("restore_mode") != "filesystem"
            return {"snapshot": snapshot.name, "stateful": stateful}
        if kind == Operation.Kind.DELETE_SNAPSHOT:
            return {"snapshot": data["snapshot"]}
        return {}


STATEFUL_KINDS = {Operation.Kind.STATEFUL_SNAPSHOT, Operation.Kind.STATEFUL_STOP}
NEEDS_RUNNING = {
    Operation.Kind.STATEFUL_SNAPSHOT,
    Operation.Kind.STOP,
    Operation.Kind.RESTART,
    Operation.Kind.STATEFUL_STOP,
}
NEEDS_STOPPED = {Operation.Kind.START, Operation.Kind.START_FRESH}


def precondition_refusal(instance: Instance, kind: str, snapshot: str) -> str:
    """Why this operation cannot be asked for now, or '' when it can."""
    if instance.gone_at is not None:
        return "This container is no longer on its host."
    if kind in NEEDS_RUNNING and instance.status != "Running":
        return f"The container is {instance.status.upper()}; this needs it RUNNING."
    if kind in NEEDS_STOPPED and instance.status != "Stopped":
        return f"The container is {instance.status.upper()}; this needs it STOPPED."
    if kind == Operation.Kind.START_FRESH and not instance.stateful:
        return "The container has no saved state to discard; use Start."
    if kind in STATEFUL_KINDS or (kind == Operation.Kind.START and instance.stateful):
        capability = instance.host.capability("stateful_stop")
        if not capability.allowed:
            return f"{instance.host.name} cannot do this: {capability.reason}"
    snapshot_exists = bool(snapshot) and instance.snapshots.filter(name=snapshot).exists()
    if kind in (Operation.Kind.SNAPSHOT, Operation.Kind.STATEFUL_SNAPSHOT) and snapshot_exists:
        return f"A snapshot named {snapshot!r} already exists."
    if kind in (Operation.Kind.RESTORE, Operation.Kind.DELETE_SNAPSHOT) and not snapshot_exists:
        return f"There is no snapshot named {snapshot!r} on this container."
    return ""


class ScheduleForm(forms.Form):
    """Every N minutes, keep the newest K scheduled stateful snapshots."""

    every_minutes = forms.IntegerField(
        label="Every (minutes)",
        min_value=5,
        max_value=7 * 24 * 60,
        help_text="At least 5 minutes; 60 is hourly, 1440 daily.",
    )
    keep = forms.IntegerField(label="Keep the newest", min_value=1, max_value=100)


STRATEGY_CHOICES = [
    ("auto", "Recommended for this host pair"),
    ("live", "Live migration (CRIU, LXD's own)"),
    ("stateful_move", "Checkpoint, move, restore"),
    ("cold", "Stop, move, start (processes restart)"),
]


class MigrationForm(forms.Form):
    """Where to, under which name, onto which pool, how, and whether to keep the source."""

    target = forms.ModelChoiceField(queryset=Host.objects.none(), label="Target host")
    new_name = forms.CharField(
        max_length=63,
        required=False,
        validators=[lxd_name_validator],
        label="Name on the target",
        help_text="Empty: the same name.",
    )
    pool = forms.CharField(
        max_length=63,
        required=False,
        validators=[SNAPSHOT_NAME],
        label="Storage pool on the target",
        help_text="Empty: the same pool.",
    )
    strategy = forms.ChoiceField(choices=STRATEGY_CHOICES, initial="auto")
    keep_source = forms.BooleanField(required=False, label="Keep the source copy (stopped)")

    def __init__(self, *args, instance: Instance, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.fields["target"].queryset = Host.objects.enrolled().exclude(pk=instance.host_id)

    def clean_target(self) -> Host:
        target = self.cleaned_data["target"]
        if target.status == Host.Status.UNREACHABLE:
            raise ValidationError(f"{target.name} is unreachable: {target.last_error}")
        return target

    def clean(self) -> dict:
        data = super().clean()
        target = data.get("target")
        if self.instance.gone_at is not None:
            raise ValidationError("This container is no longer on its host.")
        if target is not None:
            name = data.get("new_name") or self.instance.name
            if target.instances.present().filter(name=name).exists():
                raise ValidationError(f"{target.name} already has a container named {name!r}.")
        return data

    def params(self) -> dict:
        data = self.cleaned_data
        return {
            "pool": data.get("pool") or "",
            "keep_source": bool(data.get("keep_source")),
            "strategy": data["strategy"],
        }
