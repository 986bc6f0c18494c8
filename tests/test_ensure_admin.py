from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_creates_the_first_admin_once_and_prints_a_working_password():
    out = StringIO()
    call_command("ensure_admin", stdout=out)
    password = out.getvalue().split("password: ")[1].split()[0]
    client = Client()
    client.post("/accounts/login/", {"username": "admin", "password": password})
    assert "_auth_user_id" in client.session

    again = StringIO()
    call_command("ensure_admin", stdout=again)
    assert "password:" not in again.getvalue()
