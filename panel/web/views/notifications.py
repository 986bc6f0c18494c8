"""Each user's notification choices (panel/notify/): e-mail and/or a signed webhook, for
the failures they care about, and the webhook's signing secret."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from panel.notify.addresses import refusal_on_save
from panel.notify.models import NotificationChoice, new_secret
from panel.web.access import AuthenticatedHttpRequest
from panel.web.forms import web_address_field


class NotificationForm(forms.ModelForm):
    # Declared, not the model's: an address without its scheme is read as https, and only
    # http(s) is taken, the only schemes the webhook's POST can use (panel/notify/send.py).
    webhook_url = web_address_field(
        "Webhook URL", "A JSON POST, signed (X-Panel-Signature: sha256=HMAC)."
    )

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data["webhook_url"]
        why = refusal_on_save(url)
        if why:
            raise forms.ValidationError(why)
        return url

    class Meta:
        model = NotificationChoice
        fields = ["email", "webhook_url", "mine", "scheduled", "everything", "new_groups_only"]
        labels = {
            "email": "By e-mail",
            "mine": "Operations I started that fail",
            "scheduled": "Scheduled stateful snapshots that fail",
            "everything": "Every operation that fails",
            "new_groups_only": "Only new causes of failure",
        }


def choice_of(user) -> NotificationChoice:
    return NotificationChoice.objects.get_or_create(user=user)[0]


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request: AuthenticatedHttpRequest) -> HttpResponse:
    choice = choice_of(request.user)
    form = NotificationForm(request.POST or None, instance=choice)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Notification choices saved.")
        return redirect("notifications")
    context = {
        "form": form,
        "choice": choice,
        "no_address": form["email"].value() and not request.user.email,
    }
    return render(request, "panel/notifications.html", context)


@login_required
@require_POST
def notification_secret_renew(request: AuthenticatedHttpRequest) -> HttpResponse:
    choice = choice_of(request.user)
    choice.webhook_secret = new_secret()
    choice.save(update_fields=["webhook_secret"])
    messages.success(request, "A new webhook secret: update your receiver.")
    return redirect("notifications")
