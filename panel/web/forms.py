"""Forms: every field bounded, every refusal a sentence saying what to do."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from typing import cast
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.utils import timezone

from panel import lxd
from panel.hosts import endpoints
from panel.maintenance.mode import closed_because
from panel.models import (
    FailureGroup,
    Host,
    Instance,
    MaintenancePlan,
    Operation,
    lxd_name_validator,
)
from panel.operations.kinds import STATEFUL_KINDS, checkpoint_capability

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
SOCKET_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,254}$")


def clean_endpoint(value: str) -> str:
    """A known LXD/Incus unix socket path, or https://address[:port] with nothing else in it,
    whose address is not refused by panel/hosts/endpoints.py."""
    value = value.strip()
    if value.startswith("/"):
        if not SOCKET_PATH.match(value) or "/../" in f"{value}/" or "//" in value:
            raise ValidationError(
                "A socket path is absolute and uses only letters, digits, '.', '_', '-' and '/', "
                "for example /var/lib/lxd/unix.socket."
            )
        refusal = endpoints.socket_refusal(value)
        if refusal:
            raise ValidationError(refusal)
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
        or "@" in parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValidationError("Give only https://address:port, with no user, path or query.")
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise ValidationError("That URL's port is not a number between 1 and 65535.")
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.match(host):
            raise ValidationError(f"{host!r} is not a valid host name or IP address.") from None
    refusal = endpoints.host_refusal(host)
    if refusal:
        raise ValidationError(refusal)
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
        platform = host.platform
        if not platform.trust_passwords:
            secret = self.fields["secret"]
            secret.label = "Trust token"
            secret.help_text = (
                f"{platform.name} has no trust passwords: tokens are the only way. On the host, "
                f"run `{platform.trust_add_command}` and paste the token it prints. Used once; "
                "never stored."
            )

    def clean_secret(self) -> str:
        secret = self.cleaned_data["secret"]
        platform = self.host.platform
        if not platform.trust_passwords and lxd.decode_trust_token(secret) is None:
            raise ValidationError(f"This is not a trust token. {lxd.no_passwords(platform)}")
        return secret

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
        super().clean()
        data = self.cleaned_data
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


NEEDS_RUNNING = {
    Operation.Kind.STATEFUL_SNAPSHOT,
    Operation.Kind.STOP,
    Operation.Kind.RESTART,
    Operation.Kind.STATEFUL_STOP,
}
NEEDS_STOPPED = {Operation.Kind.START, Operation.Kind.START_FRESH}


ASKED_ELSEWHERE = {Operation.Kind.PREFLIGHT, Operation.Kind.MIGRATE, Operation.Kind.DELETE_COPY}


def precondition_refusal(instance: Instance, kind: str, snapshot: str) -> str:
    """Why this operation cannot be asked for now, or '' when it can."""
    if kind in ASKED_ELSEWHERE:
        return "A migration, its checks and the removal of a copy are asked for on their own pages."
    if instance.gone_at is not None:
        return "This container is no longer on its host."
    closed = closed_because(instance.host)
    if closed:
        return f"Not now: {closed}"
    if kind in NEEDS_RUNNING and instance.status != "Running":
        return f"The container is {instance.status.upper()}; this needs it RUNNING."
    if kind in NEEDS_STOPPED and instance.status != "Stopped":
        return f"The container is {instance.status.upper()}; this needs it STOPPED."
    if kind == Operation.Kind.START_FRESH and not instance.stateful:
        return "The container has no saved state to discard; use Start."
    if kind in STATEFUL_KINDS or (kind == Operation.Kind.START and instance.stateful):
        capability = checkpoint_capability(instance.host)
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
        target = cast("forms.ModelChoiceField[Host]", self.fields["target"])
        target.queryset = Host.objects.enrolled().exclude(pk=instance.host_id)

    def clean_target(self) -> Host:
        target = self.cleaned_data["target"]
        if target.status == Host.Status.UNREACHABLE:
            raise ValidationError(f"{target.name} is unreachable: {target.last_error}")
        closed = closed_because(target)
        if closed:
            raise ValidationError(f"Not now: {closed}")
        return target

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
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


class FailureStatusForm(forms.Form):
    status = forms.ChoiceField(choices=FailureGroup.Status.choices)


def web_address_field(label: str, help_text: str) -> forms.URLField:
    """An optional http(s) address of up to 500 characters; one typed without its scheme is
    read as https (Django 6.0's default, which 5.2 warns about when it is not said)."""
    return forms.URLField(
        label=label,
        max_length=500,
        required=False,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        help_text=help_text,
    )


class UpstreamForm(forms.Form):
    """The upstream bug's address; empty clears it."""

    url = web_address_field(
        "Upstream bug URL",
        "The issue you filed, e.g. https://github.com/checkpoint-restore/criu/issues/1",
    )

    def clean_url(self) -> str:
        # Shown to every viewer: a link copied with its credentials would publish them.
        url = self.cleaned_data["url"]
        if "@" in urlsplit(url).netloc:
            raise ValidationError("Give the bug's address without a user name or password.")
        return url


class FailureNoteForm(forms.Form):
    note = forms.CharField(
        label="Team note",
        max_length=2000,
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What was tried, and the workaround: shown on every failure of this group.",
    )


LXD_NAME = re.compile(r"^[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")  # lxd_name_validator's


class MaintenanceModeForm(forms.Form):
    """Why the host goes into maintenance mode: shown on its page and in every refusal."""

    reason = forms.CharField(
        max_length=500,
        label="Why",
        help_text="Shown on the host's page and in every refusal, e.g. kernel update.",
    )


class MaintenancePlanForm(forms.Form):
    """A host action and its choices: what to do with what cannot be checkpointed or moved,
    and, per container (`target:NAME`, `skip:NAME`), where to send it or to leave it out."""

    mode = forms.ChoiceField(choices=MaintenancePlan.Mode.choices)
    policy = forms.ChoiceField(
        choices=MaintenancePlan.Policy.choices,
        initial=MaintenancePlan.Policy.STOP,
        label="A running container that cannot be checkpointed or moved",
    )

    def __init__(self, *args, host: Host, names: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        others = Host.objects.enrolled().exclude(pk=host.pk).values_list("name", flat=True)
        targets = [("", "Automatic"), *((name, name) for name in others)]
        self.names = names
        for name in names:
            self.fields[f"target:{name}"] = forms.ChoiceField(choices=targets, required=False)
            self.fields[f"skip:{name}"] = forms.BooleanField(required=False)

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        if data.get("mode") == "checkpoint" and data.get("policy") == "cold":
            raise ValidationError("A checkpoint in place moves nothing: choose stop or leave.")
        return data

    @staticmethod
    def names_in(data) -> set[str]:
        """The container names a request's `target:NAME` / `skip:NAME` keys give, those that
        are valid LXD names (the API and the shell may name containers the host lacks)."""
        keys = (key.split(":", 1)[1] for key in data if key.startswith(("target:", "skip:")))
        return {name for name in keys if LXD_NAME.fullmatch(name)}

    def choices(self) -> dict:
        data = self.cleaned_data
        targets = {name: data[f"target:{name}"] for name in self.names if data[f"target:{name}"]}
        skip = [name for name in self.names if data[f"skip:{name}"]]
        return {"targets": targets, "skip": skip}
