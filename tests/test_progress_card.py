"""The progress card (panel/web/progress_card.py), built in Python for the panel's busiest
answer: its markup, the escaping a template gave for free, and the cancel form that works
without a CSRF token rendered into every poll."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from panel.models import Operation
from tests.helpers import make_host, make_instance

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
HOSTILE = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;"


def make_operation(instance, status="running", **fields) -> Operation:
    fields.setdefault("started_at", timezone.now() if status != "pending" else None)
    return Operation.objects.create(kind="stateful_snapshot", instance=instance,
                                    instance_name=instance.name, source_host=instance.host,
                                    status=status, **fields)  # fmt: skip


def poll(client, operation):
    return client.get(f"/operations/{operation.pk}/progress/", headers=HTMX)


def test_every_value_a_user_or_lxd_wrote_is_escaped(operator_client):
    instance = make_instance(make_host(), name="c1")
    running = make_operation(instance, stage=HOSTILE, progress_text=HOSTILE, may_cancel=False)
    Operation.objects.filter(pk=running.pk).update(instance_name=HOSTILE)
    page = poll(operator_client, running).content.decode()
    assert "<script" not in page and "<img" not in page
    assert page.count(escape(HOSTILE)) >= 3  # the name, the stage, LXD's progress text

    Operation.objects.filter(pk=running.pk).update(status="failed", outcome=HOSTILE, error=HOSTILE)
    ended = poll(operator_client, running).content.decode()
    assert "<script" not in ended and "<img" not in ended
    assert f'<p class="outcome" role="status">{escape(HOSTILE)}</p>' in ended
    assert f'<pre class="log">{escape(HOSTILE)}</pre>' in ended


def test_the_card_shows_the_fraction_the_transfer_and_where_the_stepper_is(viewer_client):
    moved = "c1: 12.00MB (2.00MB/s)"
    operation = make_operation(make_instance(make_host()), stage="checkpointing",
                               progress_fraction=0.4, progress_text=moved)  # fmt: skip
    page = poll(viewer_client, operation).content.decode()
    assert f'id="operation-{operation.pk}"' in page and "status-running" in page
    assert f'hx-get="/operations/{operation.pk}/progress/" hx-trigger="every 1s"' in page
    assert '<progress max="1" value="0.400" aria-label="Progress">40 %</progress>' in page
    assert "<strong>Transferred:</strong> 12.0 MB at <strong>2.0 MB/s</strong>" in page
    assert 'aria-current="step"' in page and "step-current" in page
    assert "Stateful snapshot" in page and ">Running</span>" in page
    assert "Cancel</button>" not in page  # a viewer never gets the button


def test_a_queued_operation_says_what_it_waits_for(viewer_client):
    operation = make_operation(make_instance(make_host()), status="pending")
    page = poll(viewer_client, operation).content.decode()
    assert "<strong>Stage:</strong> queued" in page
    assert "waiting for a worker (" in page
    Operation.objects.filter(pk=operation.pk).update(stage="waiting for host")
    assert (
        "waiting for a free slot on its host (" in poll(viewer_client, operation).content.decode()
    )


def test_a_poll_asks_for_no_csrf_token_and_sets_no_cookie(operator_client):
    operation = make_operation(make_instance(make_host()), may_cancel=True)
    answer = poll(operator_client, operation)
    assert b"Cancel</button>" in answer.content
    assert b"csrfmiddlewaretoken" not in answer.content
    assert f'hx-post="/operations/{operation.pk}/cancel/"'.encode() in answer.content
    assert "csrftoken" not in answer.cookies
    # The page that shows the card carries its token for a browser without JavaScript.
    page = operator_client.get(f"/operations/{operation.pk}/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in page


def test_the_polled_cancel_form_works_with_the_header_htmx_sends(operator_user):
    operation = make_operation(make_instance(make_host()), may_cancel=True)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator_user)
    browser.get(f"/operations/{operation.pk}/")  # the page sets the CSRF cookie
    url = f"/operations/{operation.pk}/cancel/"
    assert browser.post(url, headers=HTMX).status_code == 403  # no token: refused
    operation.refresh_from_db()
    assert not operation.cancel_requested

    token = browser.cookies["csrftoken"].value
    answer = browser.post(url, headers={**HTMX, "X-CSRFToken": token})
    assert answer.status_code == 200
    assert answer["HX-Redirect"] == f"/operations/{operation.pk}/"  # the whole page follows
    operation.refresh_from_db()
    assert operation.cancel_requested and operation.status == Operation.Status.RUNNING
    page = browser.get(f"/operations/{operation.pk}/").content.decode()
    assert "Cancel requested: LXD is asked if the current step allows it." in page


@pytest.mark.parametrize("pk", [1, 7, 739581826450, 10**15 + 3])
@pytest.mark.parametrize("script_prefix", ["/", "/panel/"])
def test_the_cards_urls_are_what_reverse_gives_for_any_key_and_prefix(pk, script_prefix):
    """The card reverses each URL once per script prefix and puts the key in
    (progress_card._url): the same URLs reverse() gives, behind a prefix too."""
    from django.urls import get_script_prefix, reverse, set_script_prefix

    from panel.web.progress_card import _url

    kept = get_script_prefix()
    set_script_prefix(script_prefix)
    try:
        for name in ("operation-progress", "operation-detail", "operation-cancel"):
            assert _url(name, pk) == reverse(name, args=[pk])
            assert _url(name, pk).startswith(script_prefix)
    finally:
        set_script_prefix(kept)
