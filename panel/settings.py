"""Django settings: every value comes from the environment, with defaults that make a
single-machine run work. `.env.example` lists every variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from panel.env import Env, secret_key_from

env = Env()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.str("PANEL_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env.bool("PANEL_DEBUG", False)
SECRET_KEY = secret_key_from(env, DATA_DIR)
ALLOWED_HOSTS = env.list("PANEL_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("PANEL_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "template_partials",
    "panel",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "panel.audit.AuditMiddleware",
    # A request that needed the job queue while Redis is down: a 503 that says what to do.
    "panel.broker.QueueDownMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses logins from a locked-out user and address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling: after this many failures for one user name from one address, that pair
# is locked out for the cool-off period (and the attempt is on the audit trail).
AXES_FAILURE_LIMIT = env.int("PANEL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env.int("PANEL_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "panel.urls"
WSGI_APPLICATION = "panel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database_from_env() -> dict:
    default_url = f"sqlite:///{DATA_DIR / 'panel.sqlite3'}"
    url = env.str("PANEL_DATABASE_URL", default_url)
    try:
        database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except ValueError as error:
        raise ImproperlyConfigured(f"PANEL_DATABASE_URL={url!r} is not usable: {error}") from None
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # The web server and the workers write to the same file: wait for locks instead of
        # failing, and take the write lock at BEGIN so two writers never deadlock. Connections
        # are kept (conn_max_age above): opening one per request doubled a progress poll's cost.
        database["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # A file, not memory, so the Celery worker started by the tests can see it.
        database["TEST"] = {"NAME": str(DATA_DIR / "test-panel.sqlite3")}
    return database


DATABASES = {"default": _database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("PANEL_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Production behind TLS: PANEL_SECURE=true turns on secure cookies and the redirect.
SECURE = env.bool("PANEL_SECURE", False)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE and env.bool("PANEL_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
SECURE_HSTS_SECONDS = env.int("PANEL_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("PANEL_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env.bool("PANEL_HSTS_PRELOAD", False)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Uploaded/generated files (bug bundles): never served directly, only through a view that
# checks permissions. Shared by web and workers (a volume in docker-compose.yml).
MEDIA_ROOT = DATA_DIR / "files"
MEDIA_URL = "/files-are-not-served-directly/"

# Where the panel keeps its LXD client certificate and key (never under the web root).
PANEL_CLIENT_CERT_DIR = DATA_DIR / "client-cert"
# Every LXD request gets this timeout (seconds): no worker waits forever.
LXD_TIMEOUT = env.int("PANEL_LXD_TIMEOUT", 30, minimum=1)
# Where a local LXD daemon's socket may be; the first one found is offered as a host.
LOCAL_LXD_SOCKETS = env.list(
    "PANEL_LOCAL_LXD_SOCKETS",
    ["/var/snap/lxd/common/lxd/unix.socket", "/var/lib/lxd/unix.socket"],
)

# Celery: the broker is Redis; results live in the database (Operation rows), not in Celery.
CELERY_BROKER_URL = env.str("PANEL_REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_IGNORE_RESULT = True
# Long, non-idempotent jobs (docs/operations.md explains each choice):
# - ack late, so a task a dying worker had not finished is delivered again instead of lost;
#   a redelivered task finds its Operation no longer pending (one conditional UPDATE claims
#   it) and does nothing, so no LXD action ever starts twice;
# - prefetch one, so a worker never holds queued jobs it cannot start;
# - Redis redelivers unacknowledged jobs after the visibility timeout: longer than the longest
#   operation, so a job still running is not handed to a second worker;
# - no Celery time limits: every LXD call has its own timeout and every wait is bounded, and a
#   hard limit would kill a worker in the middle of an LXD call.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "panel"
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
HOST_SYNC_MINUTES = env.int("PANEL_HOST_SYNC_MINUTES", 5, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sync-all-hosts": {
        "task": "workers.hosts.sync_all_hosts",
        "schedule": HOST_SYNC_MINUTES * 60.0,
    },
    "run-due-snapshot-schedules": {
        "task": "workers.schedules.run_due_schedules_task",
        "schedule": 60.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    # django-axes logs every login at INFO; failures reach the audit trail anyway.
    "loggers": {"axes": {"level": "WARNING"}},
    "root": {
        "handlers": ["console"],
        "level": env.choice(
            "PANEL_LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
        ),
    },
}

# The longest a single LXD operation (a checkpoint, a restore) may run before the worker
# cancels it where LXD allows, and reports it.
OPERATION_TIMEOUT_SECONDS = env.int("PANEL_OPERATION_TIMEOUT_SECONDS", 900, minimum=10)
# The reconciler (beat, every minute) settles running operations whose worker has not
# reported for this long, and pending ones nobody started (see workers/reconciler.py).
RECONCILE_SILENT_SECONDS = env.int("PANEL_RECONCILE_SILENT_SECONDS", 120, minimum=30)
# At most this many operations run at once on one host (a migration counts on both of its
# hosts; pre-flight checks do not count): CRIU freezes and dumps whole containers, and many at
# once on one host slow every one of them. Further ones wait, pending, for a free slot.
HOST_MAX_OPERATIONS = env.int("PANEL_HOST_MAX_OPERATIONS", 2, minimum=1)
HOST_SLOT_RETRY_SECONDS = 1  # how soon a waiting operation looks for a slot again
CELERY_BEAT_SCHEDULE["reconcile-operations"] = {
    "task": "workers.reconciler.reconcile_task",
    "schedule": 60.0,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": OPERATION_TIMEOUT_SECONDS * 2 + 600}
# After a migration's target side ends, how long the source side may take to end too (LXD
# 5.0.2 keeps the dump waiting in its action script, or is still stopping the source copy).
MIGRATION_SOURCE_GRACE_SECONDS = env.int("PANEL_MIGRATION_SOURCE_GRACE_SECONDS", 60, minimum=5)

# --- Bug bundles and host agents ------------------------------------------------------------
# Size caps keep one noisy host (a huge lxd.log, a flooded dmesg) from making a bundle nobody
# can attach to a bug; what was cut is noted in the manifest.
BUNDLE_ITEM_MAX_BYTES = env.int("PANEL_BUNDLE_ITEM_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
BUNDLE_TOTAL_MAX_BYTES = env.int("PANEL_BUNDLE_TOTAL_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
BUNDLE_RETENTION_DAYS = env.int("PANEL_BUNDLE_RETENTION_DAYS", 90, minimum=1)


def _redact_patterns_from_env() -> list[str]:
    """A JSON list of regular expressions (JSON, because regexes contain commas)."""
    raw = env.str("PANEL_BUNDLE_REDACT_PATTERNS", "[]") or "[]"
    try:
        patterns = json.loads(raw)
    except ValueError:
        patterns = None
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ImproperlyConfigured(
            'PANEL_BUNDLE_REDACT_PATTERNS must be a JSON list of regexes, e.g. ["corp-[0-9]+"].'
        )
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ImproperlyConfigured(
                f"PANEL_BUNDLE_REDACT_PATTERNS: {pattern!r} is not a valid regex ({error})."
            ) from None
    return patterns


BUNDLE_REDACT_PATTERNS = _redact_patterns_from_env()

# Agents answer through a result backend on the same Redis. It is used for agent replies only:
# operations and bundles keep their truth in the database, so results stay ignored by default
# and only the agent's tasks (ignore_result=False) store one, read once and then forgotten.
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_RESULT_EXPIRES = 600
# How long a bundle waits for a host's agent before recording its items as missing.
AGENT_TIMEOUT_SECONDS = env.int("PANEL_AGENT_TIMEOUT_SECONDS", 15, minimum=1)
AGENT_PROBE_MINUTES = env.int("PANEL_AGENT_PROBE_MINUTES", 5, minimum=1)
CELERY_BEAT_SCHEDULE["probe-agents"] = {
    "task": "workers.bundles.probe_agents",
    "schedule": AGENT_PROBE_MINUTES * 60.0,
}
CELERY_BEAT_SCHEDULE["delete-old-bundles"] = {
    "task": "workers.bundles.delete_old_bundles",
    "schedule": 6 * 3600.0,
}

# Read by the agent on the LXD host (docs/agent.md): where LXD keeps its files. Presets for
# Debian/Ubuntu packages and for the snap; each path can be overridden on its own.
AGENT_LAYOUTS = {
    "debian": {"lxd_dir": "/var/lib/lxd", "log_dir": "/var/log/lxd"},
    "snap": {"lxd_dir": "/var/snap/lxd/common/lxd", "log_dir": "/var/snap/lxd/common/lxd/logs"},
}
AGENT_LAYOUT = env.choice("PANEL_AGENT_LAYOUT", "debian", list(AGENT_LAYOUTS))
AGENT_LXD_DIR = env.str("PANEL_AGENT_LXD_DIR", "") or AGENT_LAYOUTS[AGENT_LAYOUT]["lxd_dir"]
AGENT_LOG_DIR = env.str("PANEL_AGENT_LOG_DIR", "") or AGENT_LAYOUTS[AGENT_LAYOUT]["log_dir"]
AGENT_LXD_BRIDGE_FILE = env.str("PANEL_AGENT_LXD_BRIDGE_FILE", "/etc/default/lxd-bridge")
AGENT_CRIU = env.str("PANEL_AGENT_CRIU", "criu")
AGENT_CRIT = env.str("PANEL_AGENT_CRIT", "crit")
