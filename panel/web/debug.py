"""What Django's debug error page (PANEL_DEBUG=true only) may show of the settings."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django hides settings whose names say API, KEY, PASS, SECRET or TOKEN; the Redis URL
    (CELERY_BROKER_URL, CELERY_RESULT_BACKEND) and database URLs carry passwords under other
    names, so any URL, broker or backend setting is hidden too."""

    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|BROKER|BACKEND|DATABASE",
        flags=re.IGNORECASE,
    )
