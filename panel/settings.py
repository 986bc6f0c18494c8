"""Django settings: every value comes from the environment, with defaults that make a
single-machine run work. `.env.example` lists every variable."""

from __future__ import annotations

import ssl
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
    # /healthz first: probes come by IP address and plain HTTP (panel/web/liveness.py).
    "panel.web.liveness.LivenessMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "panel.web.security.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "panel.accounts.audit.AuditMiddleware",
    # Inside the audit trail, so what it refuses (a NUL byte anywhere) is recorded too.
    "panel.web.unstorable.RefuseUnstorableInputMiddleware",
    # A request that needed the job queue while Redis is down: a 503 that says what to do.
    "panel.broker.QueueDownMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses logins from a locked-out user and address.
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, reading the user's role with the user (one query, not two).
    "panel.accounts.backends.PanelBackend",
]
# Database sessions, read with one prepared statement instead of the ORM's (the progress
# fragment reads one every second per open operation page): panel/accounts/sessions.py.
SESSION_ENGINE = "panel.accounts.sessions"
# Login throttling: after this many failures for one user name from one address, that pair
# is locked out for the cool-off period (and the attempt is on the audit trail).
AXES_FAILURE_LIMIT = env.int("PANEL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env.int("PANEL_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# How many reverse proxies (a TLS proxy, a load balancer) stand in front of the web replicas:
# the client's address is then read from X-Forwarded-For as they wrote it, for the audit
# trail and the login throttle alike (panel/accounts/addresses.py). 0: REMOTE_ADDR.
TRUSTED_PROXIES = env.int("PANEL_TRUSTED_PROXIES", 0)
AXES_CLIENT_IP_CALLABLE = "panel.accounts.addresses.client_address"

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


def _database_from_env() -> dj_database_url.DBConfig:
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
# Built into the image (PANEL_STATIC_ROOT=/app/staticfiles there), not into the data volume,
# so an upgraded image serves its own files and manifest.
STATIC_ROOT = Path(env.str("PANEL_STATIC_ROOT", "") or DATA_DIR / "staticfiles")
# Where bundles are kept: "filesystem" (MEDIA_ROOT below; on several machines only if it is a
# folder they all share) or "database" (every web replica serves what any worker built).
FILE_STORAGE = env.choice("PANEL_FILE_STORAGE", "filesystem", ["filesystem", "database"])
STORAGES = {
    "default": {
        "BACKEND": {
            "filesystem": "django.core.files.storage.FileSystemStorage",
            "database": "panel.bundles.storage.DatabaseStorage",
        }[FILE_STORAGE]
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Production behind TLS: PANEL_SECURE=true turns on secure cookies and the redirect.
SECURE = env.bool("PANEL_SECURE", False)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE and env.bool("PANEL_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
# HSTS is on with PANEL_SECURE (a year); subdomains and preloading stay the operator's call,
# since the panel cannot know whether every sibling host speaks HTTPS: the deploy check's
# warnings about those two are silenced only while they are left off.
SECURE_HSTS_SECONDS = env.int("PANEL_HSTS_SECONDS", 31_536_000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("PANEL_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env.bool("PANEL_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [
    *(["security.W005"] if not SECURE_HSTS_INCLUDE_SUBDOMAINS else []),
    *(["security.W021"] if not SECURE_HSTS_PRELOAD else []),
]
# Content-Security-Policy (panel/web/security.py): every script, style and image comes from
# the panel itself, no inline script, handler or style attribute, no framing.
CONTENT_SECURITY_POLICY = env.str("PANEL_CSP", "") or (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
CONTENT_SECURITY_POLICY_REPORT_ONLY = env.bool("PANEL_CSP_REPORT_ONLY", False)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The debug error page (PANEL_DEBUG only) never shows the Redis or database URLs.
DEFAULT_EXCEPTION_REPORTER_FILTER = "panel.web.debug.ExceptionReporterFilter"
SESSION_COOKIE_HTTPONLY = True

# Uploaded/generated files (bug bundles): never served directly, only through a view that
# checks permissions. Shared by web and workers (a volume in docker-compose.yml).
MEDIA_ROOT = Path(env.str("PANEL_FILES_DIR", "") or DATA_DIR / "files")
MEDIA_URL = "/files-are-not-served-directly/"

# The panel's LXD client certificate and key live in the database, the key sealed with a key
# derived from this (or from SECRET_KEY when empty): panel/hosts/identity.py. Set it to rotate
# PANEL_SECRET_KEY without losing the trust of every host; the same on every machine.
PANEL_IDENTITY_KEY = env.str("PANEL_IDENTITY_KEY", "")
if PANEL_IDENTITY_KEY and len(PANEL_IDENTITY_KEY) < 32:
    raise ImproperlyConfigured("PANEL_IDENTITY_KEY is too short: use at least 32 characters.")
# Where installs before that kept the pair (imported once, then the key file is deleted), and
# where each process caches the pinned server certificates pylxd reads from files.
PANEL_CLIENT_CERT_DIR = DATA_DIR / "client-cert"
# Every LXD request gets this timeout (seconds): no worker waits forever.
LXD_TIMEOUT = env.int("PANEL_LXD_TIMEOUT", 30, minimum=1)
# Where a local LXD (or Incus) daemon's socket may be; the first one found is offered as a
# host, and only these paths are accepted as a host's unix socket.
LOCAL_LXD_SOCKETS = env.list(
    "PANEL_LOCAL_LXD_SOCKETS",
    [
        "/var/snap/lxd/common/lxd/unix.socket",
        "/var/lib/lxd/unix.socket",
        "/var/lib/incus/unix.socket",
    ],
)
# Host endpoints on loopback, link-local or cloud-metadata addresses are refused (the panel
# would be a way to reach the machine's own services); an administrator lists here the
# addresses or networks that are allowed anyway, e.g. "127.0.0.1,::1" or "127.0.0.0/8".
ALLOWED_HOST_NETWORKS = env.networks("PANEL_ALLOWED_HOST_NETWORKS")

# Celery: the broker is Redis; results live in the database (Operation rows), not in Celery.
CELERY_BROKER_URL = env.str("PANEL_REDIS_URL", "redis://127.0.0.1:6379/0")
if not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://")):
    raise ImproperlyConfigured(
        "PANEL_REDIS_URL must start with redis://, rediss:// (TLS) or redis+socket:// (a path)."
    )
# rediss://: TLS to Redis, the server's certificate checked against PANEL_REDIS_CA_FILE (or the
# system's CAs), for the broker and the agents' replies alike.
REDIS_CA_FILE = env.str("PANEL_REDIS_CA_FILE", "")
CELERY_BROKER_USE_SSL: dict | None = None
if CELERY_BROKER_URL.startswith("rediss://"):
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if REDIS_CA_FILE:
        CELERY_BROKER_USE_SSL["ssl_ca_certs"] = REDIS_CA_FILE
CELERY_REDIS_BACKEND_USE_SSL = CELERY_BROKER_USE_SSL
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
        "task": "panel.hosts.tasks.sync_all_hosts",
        "schedule": HOST_SYNC_MINUTES * 60.0,
    },
    "run-due-snapshot-schedules": {
        "task": "panel.operations.tasks.run_due_schedules_task",
        "schedule": 60.0,
    },
}

# PANEL_LOG_FORMAT=json: one JSON object per line, each with the operation it is about
# (panel/logs.py); the workers' own handlers get the same (workers/celery.py).
LOG_FORMAT = env.choice("PANEL_LOG_FORMAT", "plain", ["plain", "json"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line through the redaction policy: no Redis password, no container secret.
    "filters": {
        "operation": {"()": "panel.logs.OperationIdFilter"},
        "redact": {"()": "panel.redaction.RedactingFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "panel.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["operation", "redact"],
        }
    },
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
# reported for this long, and pending ones nobody started (see panel/operations/reconciler.py).
RECONCILE_SILENT_SECONDS = env.int("PANEL_RECONCILE_SILENT_SECONDS", 120, minimum=30)
# At most this many operations run at once on one host (a migration counts on both of its
# hosts; pre-flight checks do not count): CRIU freezes and dumps whole containers, and many at
# once on one host slow every one of them. Further ones wait, pending, for a free slot.
HOST_MAX_OPERATIONS = env.int("PANEL_HOST_MAX_OPERATIONS", 2, minimum=1)
HOST_SLOT_RETRY_SECONDS = 1  # how soon a waiting operation looks for a slot again
CELERY_BEAT_SCHEDULE["reconcile-operations"] = {
    "task": "panel.operations.tasks.reconcile_task",
    "schedule": 60.0,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": OPERATION_TIMEOUT_SECONDS * 2 + 600}
# After a migration's target side ends, how long the source side may take to end too (LXD
# 5.0.2 keeps the dump waiting in its action script, or is still stopping the source copy).
MIGRATION_SOURCE_GRACE_SECONDS = env.int("PANEL_MIGRATION_SOURCE_GRACE_SECONDS", 60, minimum=5)
# When a host stops answering in the middle of an operation (its LXD killed or restarted, the
# link cut), how long the operation keeps asking it before deciding from what the other host
# says (panel/operations/peers.py). A restarted LXD answers within seconds.
MIGRATION_PEER_WAIT_SECONDS = env.int("PANEL_MIGRATION_PEER_WAIT_SECONDS", 30, minimum=5)

# --- Bug bundles and host agents ------------------------------------------------------------
# Size caps keep one noisy host (a huge lxd.log, a flooded dmesg) from making a bundle nobody
# can attach to a bug; what was cut is noted in the manifest.
BUNDLE_ITEM_MAX_BYTES = env.int("PANEL_BUNDLE_ITEM_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
BUNDLE_TOTAL_MAX_BYTES = env.int("PANEL_BUNDLE_TOTAL_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
BUNDLE_RETENTION_DAYS = env.int("PANEL_BUNDLE_RETENTION_DAYS", 90, minimum=1)


# Extra secrets the redaction policy (panel/redaction.py) removes everywhere: pages, the API,
# stored logs, operations' errors, the audit trail, bundles (docs/security.md).
REDACT_PATTERNS = env.regexes("PANEL_REDACT_PATTERNS")

# Agents answer through a result backend on the same Redis. It is used for agent replies only:
# operations and bundles keep their truth in the database, so results stay ignored by default
# and only the agent's tasks (ignore_result=False) store one, read once and then forgotten.
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_RESULT_EXPIRES = 600
# How long a bundle waits for a host's agent before recording its items as missing.
AGENT_TIMEOUT_SECONDS = env.int("PANEL_AGENT_TIMEOUT_SECONDS", 15, minimum=1)
AGENT_PROBE_MINUTES = env.int("PANEL_AGENT_PROBE_MINUTES", 5, minimum=1)
CELERY_BEAT_SCHEDULE["probe-agents"] = {
    "task": "panel.hosts.tasks.probe_agents",
    "schedule": AGENT_PROBE_MINUTES * 60.0,
}
CELERY_BEAT_SCHEDULE["delete-old-bundles"] = {
    "task": "panel.bundles.tasks.delete_old_bundles_task",
    "schedule": 6 * 3600.0,
}
# A bundle whose worker has not finished it this long after starting is taken as abandoned
# (the worker died): a redelivered job rebuilds it, and the bundle reconciler ends it so that
# it can be collected again (panel/bundles/collect.py).
BUNDLE_STALE_SECONDS = env.int("PANEL_BUNDLE_STALE_SECONDS", 300, minimum=60)
CELERY_BEAT_SCHEDULE["reconcile-bundles"] = {
    "task": "panel.bundles.tasks.reconcile_bundles_task",
    "schedule": 60.0,
}

# Read by the agent on the LXD or Incus host (docs/agent.md): where the server keeps its
# files, and which platform it is (its log names and rules: panel/lxd/platforms.py). Presets
# for Debian/Ubuntu's LXD packages, LXD's snap and Debian's Incus; each path can be
# overridden on its own.
AGENT_LAYOUTS = {
    "debian": {"platform": "lxd", "lxd_dir": "/var/lib/lxd", "log_dir": "/var/log/lxd"},
    "snap": {
        "platform": "lxd",
        "lxd_dir": "/var/snap/lxd/common/lxd",
        "log_dir": "/var/snap/lxd/common/lxd/logs",
    },
    "incus": {"platform": "incus", "lxd_dir": "/var/lib/incus", "log_dir": "/var/log/incus"},
}
AGENT_LAYOUT = env.choice("PANEL_AGENT_LAYOUT", "debian", list(AGENT_LAYOUTS))
AGENT_PLATFORM = AGENT_LAYOUTS[AGENT_LAYOUT]["platform"]
AGENT_LXD_DIR = env.str("PANEL_AGENT_LXD_DIR", "") or AGENT_LAYOUTS[AGENT_LAYOUT]["lxd_dir"]
AGENT_LOG_DIR = env.str("PANEL_AGENT_LOG_DIR", "") or AGENT_LAYOUTS[AGENT_LAYOUT]["log_dir"]
# Empty: the platform's own (LXD 2.x's /etc/default/lxd-bridge; Incus has none).
AGENT_LXD_BRIDGE_FILE = env.str("PANEL_AGENT_LXD_BRIDGE_FILE", "")
AGENT_CRIU = env.str("PANEL_AGENT_CRIU", "criu")
AGENT_CRIT = env.str("PANEL_AGENT_CRIT", "crit")

# --- Notifications (panel/notify/) -------------------------------------------------------------
# Links in e-mails and webhooks point here: the address users reach the panel at.
PUBLIC_URL = env.str("PANEL_PUBLIC_URL", "") or "http://127.0.0.1:8000"
# Django's SMTP backend; PANEL_EMAIL_BACKEND may name another (the console one prints mail).
EMAIL_BACKEND = env.str("PANEL_EMAIL_BACKEND", "") or "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.str("PANEL_EMAIL_HOST", "") or "localhost"
EMAIL_PORT = env.int("PANEL_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env.str("PANEL_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env.str("PANEL_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env.bool("PANEL_EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 15
DEFAULT_FROM_EMAIL = env.str("PANEL_EMAIL_FROM", "") or "lxd-panel@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Webhooks go only to globally routable addresses unless this allows the local network
# (loopback, private, link-local): any signed-in user picks their URL (panel/notify/addresses.py).
WEBHOOK_LOCAL_ADDRESSES = env.bool("PANEL_WEBHOOK_LOCAL_ADDRESSES", False)

# --- Metrics (panel/metrics.py) ----------------------------------------------------------------
# /metrics answers a bearer token, or requests from these networks (behind a proxy, the
# proxy's address is what the panel sees).
METRICS_TOKEN = env.str("PANEL_METRICS_TOKEN", "")


def _networks_from_env() -> list:
    import ipaddress

    networks = []
    for item in env.list("PANEL_METRICS_ALLOW", ["127.0.0.1/32", "::1/128"]):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"PANEL_METRICS_ALLOW: {item!r} is not a network (like 10.0.0.0/8)."
            ) from None
    return networks


METRICS_ALLOW = _networks_from_env()
