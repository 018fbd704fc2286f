"""Countersign settings, read from the environment.

Local defaults (no variables set) give a working system: SQLite under ./data,
the broker chosen by `runstack`, the offline workspace under ./data/workspaces.
Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and DEBUG=0.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_float, env_int, env_list, env_str
from core.sentry import init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("COUNTERSIGN_DATA_DIR", str(BASE_DIR / "data")))

DEBUG = env_bool("DEBUG", True)
_INSECURE_KEY = "django-insecure-local-development-key-change-me"
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set (and not empty) when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "django_celery_results",
    "django_prometheus",
    "core",
    "accounts",
    "jobs",
    "checkpoints",
    "agents",
    "workflows",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # first: times the whole request
    # Early, so later middleware's log lines (and any job a view creates) carry the id.
    "config.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # last
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'countersign.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # No per-use health query: tasks close broken connections (jobs.tasks).
        conn_health_checks=False,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for locks instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# django-prometheus' wrappers of the same backends count queries and errors.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
CACHES = {"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.backends.RolePermissionBackend",  # organization roles -> admin permissions
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))

REST_FRAMEWORK = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.exceptions.api_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Countersign API",
    "DESCRIPTION": "Durable AI-agent jobs that pause at checkpoints until a person decides.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.add_error_responses",
    ],
}

# --- Redis / Celery ---------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = env_str("COUNTERSIGN_QUEUE", "countersign")
# A worker that dies mid-task must not lose the message: ack after the run,
# and re-queue when the child process is killed (SIGKILL / OOM).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message per process at a time, so a short job never waits behind a long one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
# Celery's Django fixup closes every DB connection after each task unless this
# is set; reconnecting cost more than the whole rest of a short run.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# Runs are short (they suspend rather than wait); the limits catch a runaway step.
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# Redis re-delivers an unacked message after visibility_timeout. Set it
# explicitly, above the task time limit; the job lease makes a re-delivery harmless.
BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    "queue_order_strategy": "priority",
    "priority_steps": list(range(10)),
    "sep": ":",
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker of `runstack` when no Redis is around: messages are
    # files under data/broker (no priorities, one machine only).
    _BROKER_DIR = DATA_DIR / "broker"
    _BROKER_DIR.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        data_folder_in=str(_BROKER_DIR),
        data_folder_out=str(_BROKER_DIR),
        store_processed=False,
        control_folder=str(_BROKER_DIR / "control"),  # its default is ./control
    )
if CELERY_BROKER_URL.startswith(("amqp", "pyamqp")):
    # RabbitMQ needs the queue declared with a priority range.
    from kombu import Queue

    CELERY_TASK_QUEUES = [
        Queue(CELERY_TASK_DEFAULT_QUEUE, queue_arguments={"x-max-priority": 9}),
    ]
# Beat's housekeeping jumps the job queue (most urgent broker priority) and
# expires rather than piling up while no worker is consuming.
_URGENT = 9 if CELERY_BROKER_URL.startswith(("amqp", "pyamqp")) else 0
_RECONCILE_INTERVAL = env_float("COUNTERSIGN_RECONCILE_INTERVAL", 5.0)
_EXPIRE_INTERVAL = env_float("COUNTERSIGN_EXPIRE_INTERVAL", 10.0)
CELERY_BEAT_SCHEDULE = {
    "reconcile-jobs": {
        "task": "agents.reconcile",
        "schedule": _RECONCILE_INTERVAL,
        "options": {"priority": _URGENT, "expires": max(_RECONCILE_INTERVAL * 2, 1.0)},
    },
    "expire-checkpoints": {
        "task": "checkpoints.expire_due",
        "schedule": _EXPIRE_INTERVAL,
        "options": {"priority": _URGENT, "expires": max(_EXPIRE_INTERVAL * 2, 1.0)},
    },
}

# --- Countersign runtime ----------------------------------------------------
# Where code-generation and data-processing jobs may write, one folder per job.
COUNTERSIGN_WORKSPACE_ROOT = Path(
    env_str("COUNTERSIGN_WORKSPACE_ROOT", str(DATA_DIR / "workspaces"))
)
# A run holds its job's lease for this long and renews it every heartbeat.
COUNTERSIGN_LEASE_SECONDS = env_float("COUNTERSIGN_LEASE_SECONDS", 60.0)
COUNTERSIGN_HEARTBEAT_SECONDS = env_float("COUNTERSIGN_HEARTBEAT_SECONDS", 5.0)
# A queued job whose message has not started within this long is re-enqueued.
COUNTERSIGN_RECONCILE_GRACE_SECONDS = env_float("COUNTERSIGN_RECONCILE_GRACE_SECONDS", 30.0)
# When the broker holds a backlog, a queued job's message is probably just
# waiting its turn: re-send only after this much longer grace.
COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS = env_float(
    "COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS", 900.0
)
COUNTERSIGN_RECONCILE_BATCH = env_int("COUNTERSIGN_RECONCILE_BATCH", 500)
# Timers and retries further off than this send no countdown message (it would
# wait unacked in worker memory); the reconciler fires them from the database.
COUNTERSIGN_MAX_COUNTDOWN_SECONDS = env_float("COUNTERSIGN_MAX_COUNTDOWN_SECONDS", 300.0)
# Default job retry policy (a handler may set its own).
COUNTERSIGN_DEFAULT_MAX_ATTEMPTS = env_int("COUNTERSIGN_DEFAULT_MAX_ATTEMPTS", 3)
COUNTERSIGN_RETRY_BACKOFF_SECONDS = env_float("COUNTERSIGN_RETRY_BACKOFF_SECONDS", 2.0)
COUNTERSIGN_RETRY_BACKOFF_MAX_SECONDS = env_float("COUNTERSIGN_RETRY_BACKOFF_MAX_SECONDS", 300.0)
# Four-eyes rule: may a job's creator approve its own checkpoints?
COUNTERSIGN_ALLOW_SELF_APPROVAL = env_bool("COUNTERSIGN_ALLOW_SELF_APPROVAL", False)
# Jobs started with no organization named (command line, scripts) belong to this one,
# created on first use.
COUNTERSIGN_DEFAULT_ORGANIZATION = env_str("COUNTERSIGN_DEFAULT_ORGANIZATION", "default")
# Extra modules that register job handlers, imported by every process.
COUNTERSIGN_HANDLER_MODULES = env_list("COUNTERSIGN_HANDLER_MODULES", [])
# Live progress events are published here (best effort); empty disables it.
COUNTERSIGN_EVENTS_REDIS_URL = env_str("COUNTERSIGN_EVENTS_REDIS_URL", REDIS_URL)
# Counters and histograms from every process add up in this Redis (empty: none kept).
COUNTERSIGN_METRICS_REDIS_URL = env_str("COUNTERSIGN_METRICS_REDIS_URL", REDIS_URL)
COUNTERSIGN_METRICS_PREFIX = env_str("COUNTERSIGN_METRICS_PREFIX", "countersign:metrics")
# When set, /metrics wants `Authorization: Bearer <token>`.
COUNTERSIGN_METRICS_TOKEN = env_str("COUNTERSIGN_METRICS_TOKEN", "")

# Links in notifications point here (the admin review page of a checkpoint).
COUNTERSIGN_PUBLIC_URL = env_str("COUNTERSIGN_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# LLM calls (keys and base URLs: see agents/providers/registry.py and .env.example).
COUNTERSIGN_LLM_TIMEOUT_SECONDS = env_float("COUNTERSIGN_LLM_TIMEOUT_SECONDS", 60.0)
COUNTERSIGN_LLM_MAX_ATTEMPTS = env_int("COUNTERSIGN_LLM_MAX_ATTEMPTS", 4)
COUNTERSIGN_LLM_RETRY_BACKOFF_SECONDS = env_float("COUNTERSIGN_LLM_RETRY_BACKOFF_SECONDS", 1.0)
COUNTERSIGN_LLM_MAX_RETRY_WAIT_SECONDS = env_float("COUNTERSIGN_LLM_MAX_RETRY_WAIT_SECONDS", 60.0)
# The http_request tool reaches only these hosts ("api.example.com", or ".example.com"
# for a domain and its subdomains); empty: none.
COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = env_list("COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS", [])
COUNTERSIGN_HTTP_TOOL_TIMEOUT_SECONDS = env_float("COUNTERSIGN_HTTP_TOOL_TIMEOUT_SECONDS", 10.0)
# A job parked at its concurrency key's limit is woken when a slot frees; this is
# the fallback if that wake-up is lost.
COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS = env_float(
    "COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS", 300.0
)
# How deep jobs may start jobs (run_job): a job at this depth cannot start a child.
COUNTERSIGN_MAX_JOB_DEPTH = env_int("COUNTERSIGN_MAX_JOB_DEPTH", 5)
# Streamed LLM text is written as one event per this many seconds, not one per chunk.
COUNTERSIGN_STREAM_COALESCE_SECONDS = env_float("COUNTERSIGN_STREAM_COALESCE_SECONDS", 0.05)
COUNTERSIGN_WEBHOOK_TIMEOUT_SECONDS = env_float("COUNTERSIGN_WEBHOOK_TIMEOUT_SECONDS", 5.0)
COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS = env_int("COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS", 6)
COUNTERSIGN_WEBHOOK_BACKOFF_SECONDS = env_float("COUNTERSIGN_WEBHOOK_BACKOFF_SECONDS", 5.0)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "countersign@localhost")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
# json: one object per line, for log collectors; text: key=value after the message.
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json").lower()
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "core.logs.JsonFormatter"},
        "text": {"()": "core.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes speak plain HTTP
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Only marks the site as eligible for browsers' preload lists; submission is manual.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True

# Last, once everything it might report about is configured; a no-op without SENTRY_DSN.
init_sentry(debug=DEBUG)
