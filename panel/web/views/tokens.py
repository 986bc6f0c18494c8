"""Each user's API tokens (docs/api.md): made here (read-only or read-and-act, expiring),
shown once, listed by prefix with their last use, revoked. Administrators see everyone's in
Django's admin."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from panel.accounts.models import ApiToken, no_control_characters
from panel.accounts.tokens import issue_token, revoke
from panel.web.access import AuthenticatedHttpRequest

EXPIRY_DAYS = [("7", "In 7 days"), ("30", "In 30 days"), ("90", "In 90 days"),
               ("365", "In a year"), ("never", "Never")]  # fmt: skip
DEFAULT_EXPIRY_DAYS = "90"


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        validators=[no_control_characters],
        help_text="What it is for, e.g. “nightly snapshots from CI”.",
    )
    # Least privilege when a client leaves them out: read only, 90 days.
    scope = forms.ChoiceField(
        choices=ApiToken.Scope.choices,
        initial=ApiToken.Scope.READ,
        required=False,
        help_text="Read only: GET requests alone. Read and act: whatever your role allows.",
    )
    expires_in = forms.ChoiceField(
        choices=EXPIRY_DAYS, initial=DEFAULT_EXPIRY_DAYS, required=False, label="Expires"
    )

    def clean_scope(self) -> str:
        return self.cleaned_data.get("scope") or ApiToken.Scope.READ

    def expires_at(self) -> dt.datetime | None:
        days = self.cleaned_data.get("expires_in") or DEFAULT_EXPIRY_DAYS
        return None if days == "never" else timezone.now() + dt.timedelta(days=int(days))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The list, and the form that makes a token. The new token is rendered in the answer to
    the POST itself (never stored, never redirected through the session), so it is shown
    exactly once."""
    form = TokenForm(request.POST or None)
    if request.method == "POST" and not sent_as_utf8(request):
        form.add_error(None, "The form was not sent as UTF-8 text; nothing was created.")
    new_token = ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        _, new_token = issue_token(request.user, data["name"], data["scope"], form.expires_at())
        form = TokenForm()
    context = {
        "form": form,
        "new_token": new_token,
        "tokens": request.user.api_tokens.order_by("-created_at", "-pk"),
    }
    status = 400 if request.method == "POST" and form.errors else 200
    return render(request, "panel/tokens/list.html", context, status=status)


def sent_as_utf8(request: HttpRequest) -> bool:
    """Django reads a form body that is not UTF-8 as Latin-1, which would name a token with
    mojibake; refuse it instead."""
    try:
        request.body.decode()
    except RawPostDataException:  # multipart, already parsed part by part
        return True
    except UnicodeDecodeError:
        return False
    return True


@login_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Only the owner's own tokens are found here; anyone else's is a 404."""
    token = get_object_or_404(request.user.api_tokens, pk=pk)
    revoke(request.user.api_tokens.filter(pk=token.pk), "by its owner")
    messages.success(request, f"Revoked {token.name} ({token.prefix}…): it no longer works.")
    return redirect("token-list")
