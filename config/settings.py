"""Countersign settings, read from the environment.

Local defaults (no variables set) give a working system: SQLite under ./data,
the broker chosen by `runstack`, the offline workspace under ./data/workspaces.
Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and DEBUG=0.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.env import document, env_bool, env_float, env_int, env_list, env_str, section
from core.sentry import init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent
section("Storage")
DATA_DIR = Path(
    env_str(
        "COUNTERSIGN_DATA_DIR",
        str(BASE_DIR / "data"),
        "Local state: the default SQLite file, static files, workspaces, the embedded broker.",
        shown="<project>/data",
    )
)

section("Django and the web")
DEBUG = env_bool(
    "DEBUG",
    True,
    "Debug mode; set 0 in production (then SECRET_KEY is required, and HTTPS, HSTS and secure "
    "cookies are on).",
)
_INSECURE_KEY = "django-insecure-local-development-key-change-me"
SECRET_KEY = env_str(
    "SECRET_KEY",
    _INSECURE_KEY if DEBUG else "",
    "Signing key; required when DEBUG=0 (with DEBUG on, an insecure development key is used).",
    shown="",
)
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set (and not empty) when DEBUG is off")
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]"],
    "Host names the site answers to, comma-separated.",
)
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS",
    [],
    "Origins trusted for form posts behind a proxy, comma-separated (e.g. "
    "https://countersign.example.com).",
)
WEB_THREADS = env_int(
    "WEB_THREADS",
    8,
    "Threads per web process serving the API, the admin and every other synchronous view; the "
    "job event stream runs on the event loop and holds none (core/serving.py).",
)
COUNTERSIGN_TOKEN_CACHE_SECONDS = env_float(
    "COUNTERSIGN_TOKEN_CACHE_SECONDS",
    5.0,
    "Seconds a web process reuses what an API token's look-up found (its user, membership and "
    "role) before reading it again; a revocation, role change or deactivation made in another "
    "process takes effect within this time. 0 reads it on every request.",
)

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

section("Storage")
DATABASES = {
    "default": dj_database_url.parse(
        env_str(
            "DATABASE_URL",
            f"sqlite:///{DATA_DIR / 'countersign.sqlite3'}",
            "The database as a URL; PostgreSQL in production, e.g. "
            "postgres://user:password@host:5432/countersign.",
            shown="sqlite:///<COUNTERSIGN_DATA_DIR>/countersign.sqlite3",
        ),
        conn_max_age=env_int(
            "DATABASE_CONN_MAX_AGE",
            60,
            "Seconds a worker keeps a database connection open (always 0 on SQLite; the web "
            "process borrows from a pool instead, see DATABASE_POOL).",
        ),
        # A connection kept across tasks is pinged before its first use in each one, so
        # one broken by a database restart or a killed backend is replaced, not failed on.
        conn_health_checks=True,
    )
}
DATABASE_POOL = env_bool(
    "DATABASE_POOL",
    False,
    "PostgreSQL: each process keeps a pool of at most WEB_THREADS + 4 connections (Django's "
    "connection pooling), lent to a request or a stream's read and given back after it; on by "
    "default in the web process (config/asgi.py). Replaces DATABASE_CONN_MAX_AGE there.",
)
if DATABASE_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pooled connection is checked before it is lent (CONN_HEALTH_CHECKS), so one broken
    # by a database restart is replaced instead of failing the request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        # The request threads, and the event streams' short reads on the default executor.
        "max_size": WEB_THREADS + 4,
        "timeout": 10,  # seconds a request waits for a free connection before a 500
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
STATIC_ROOT = Path(
    env_str(
        "STATIC_ROOT",
        str(DATA_DIR / "static"),
        "Where collectstatic puts static files.",
        shown="<COUNTERSIGN_DATA_DIR>/static",
    )
)

REST_FRAMEWORK = {
    # Bodies are JSON only: job input, edited payloads and definitions are structures that
    # form encodings cannot carry, and a schema offering them makes generated clients send
    # multipart. The browsable API still posts through its raw-data (JSON) form. JSON nested
    # too deep, or holding a NUL, is a 400 (core/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["core.parsers.SafeJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
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
    "ENUM_NAME_OVERRIDES": {
        "CheckpointKindEnum": "checkpoints.models.CheckpointKind",
        "CheckpointStatusEnum": "checkpoints.models.CheckpointStatus",
        "WorkflowTriggerEnum": "workflows.models.Trigger",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.add_error_responses",
    ],
}

section("Broker and Celery")
REDIS_URL = env_str(
    "REDIS_URL",
    "redis://127.0.0.1:6379/0",
    "Redis: the default for the broker, live events and metrics.",
)
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL",
    REDIS_URL,
    "The broker: redis://..., amqp://guest:guest@host:5672// (RabbitMQ), or filesystem:// (local "
    "only).",
    shown="<REDIS_URL>",
)
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = env_int(
    "CELERY_RESULT_EXPIRES",
    7 * 24 * 3600,
    "Seconds a Celery task result (django_celery_results) is kept; the retention pass deletes "
    "older ones (0: kept forever).",
)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = env_str(
    "COUNTERSIGN_QUEUE", "countersign", "The Celery queue of every task; the same in every process."
)
# A worker that dies mid-task must not lose the message: ack after the run,
# and re-queue when the child process is killed (SIGKILL / OOM).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message per process at a time, so a short job never waits behind a long one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
# Celery's Django fixup closes every DB connection after each task unless this
# is set; reconnecting cost more than the whole rest of a short run.
CELERY_DB_REUSE_MAX = env_int(
    "CELERY_DB_REUSE_MAX",
    1000,
    "Tasks a worker process runs before it reconnects to the database (0: every task).",
)
# Runs are short (they suspend rather than wait); the limits catch a runaway step.
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT",
    600,
    "Seconds before a run gets SoftTimeLimitExceeded (handled like any error).",
)
CELERY_TASK_TIME_LIMIT = env_int(
    "CELERY_TASK_TIME_LIMIT",
    660,
    "Seconds before a run's worker process is killed (the job is taken over once its lease "
    "expires).",
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's task events (sent, received, started, succeeded) are for Flower and
# `celery events`; nothing in Countersign reads them, and each is one more broker
# publish per message, three of them in the worker before and after every run.
COUNTERSIGN_CELERY_TASK_EVENTS = env_bool(
    "COUNTERSIGN_CELERY_TASK_EVENTS",
    False,
    "Send Celery's task events, for Flower or `celery events` (each costs a broker publish "
    "per message sent and three per task run).",
)
CELERY_WORKER_SEND_TASK_EVENTS = COUNTERSIGN_CELERY_TASK_EVENTS
CELERY_TASK_SEND_SENT_EVENT = COUNTERSIGN_CELERY_TASK_EVENTS
# Redis re-delivers an unacked message after visibility_timeout. Set it
# explicitly, above the task time limit; the job lease makes a re-delivery harmless.
BROKER_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT",
    3600,
    "Redis: seconds before an unacknowledged message is delivered again; keep it above "
    "CELERY_TASK_TIME_LIMIT.",
)
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
_RECONCILE_INTERVAL = env_float(
    "COUNTERSIGN_RECONCILE_INTERVAL", 5.0, "Seconds between reconciler runs (celery beat)."
)
_EXPIRE_INTERVAL = env_float(
    "COUNTERSIGN_EXPIRE_INTERVAL",
    10.0,
    "Seconds between sweeps for expired checkpoints (celery beat).",
)
_SCHEDULE_INTERVAL = env_float(
    "COUNTERSIGN_SCHEDULE_INTERVAL",
    10.0,
    "Seconds between looks for due workflow schedules (celery beat); a schedule fires at "
    "most this late.",
)
_RETENTION_INTERVAL = env_float(
    "COUNTERSIGN_RETENTION_INTERVAL",
    60.0,
    "Seconds between retention passes (celery beat), each deleting at most one batch of each "
    "kind (see COUNTERSIGN_RETENTION_DAYS).",
)
# Retention is background work: behind every job on the broker.
_BACKGROUND = 0 if CELERY_BROKER_URL.startswith(("amqp", "pyamqp")) else 9
CELERY_BEAT_SCHEDULE = {
    "reconcile-jobs": {
        "task": "agents.reconcile",
        "schedule": _RECONCILE_INTERVAL,
        "options": {"priority": _URGENT, "expires": max(_RECONCILE_INTERVAL * 2, 1.0)},
    },
    "fire-schedules": {
        "task": "workflows.fire_schedules",
        "schedule": _SCHEDULE_INTERVAL,
        "options": {"priority": _URGENT, "expires": max(_SCHEDULE_INTERVAL * 2, 1.0)},
    },
    "expire-checkpoints": {
        "task": "checkpoints.expire_due",
        "schedule": _EXPIRE_INTERVAL,
        "options": {"priority": _URGENT, "expires": max(_EXPIRE_INTERVAL * 2, 1.0)},
    },
    "prune": {
        "task": "jobs.prune",
        "schedule": _RETENTION_INTERVAL,
        "options": {"priority": _BACKGROUND, "expires": max(_RETENTION_INTERVAL * 2, 1.0)},
    },
}

section("Storage")
COUNTERSIGN_WORKSPACE_ROOT = Path(
    env_str(
        "COUNTERSIGN_WORKSPACE_ROOT",
        str(DATA_DIR / "workspaces"),
        "Parent folder of the per-job workspaces, the only place jobs write files; shared by web "
        "and workers.",
        shown="<COUNTERSIGN_DATA_DIR>/workspaces",
    )
)
section("Retention")
COUNTERSIGN_RETENTION_DAYS = env_int(
    "COUNTERSIGN_RETENTION_DAYS",
    0,
    "Finished jobs are deleted this many days after they finished, with their steps, events, "
    "checkpoints, child jobs and workspaces (0: kept forever). See docs/operations.md, "
    "Retention.",
)
COUNTERSIGN_DECISION_RETENTION_DAYS = env_int(
    "COUNTERSIGN_DECISION_RETENTION_DAYS",
    0,
    "Checkpoint decisions (the audit trail) outlive their deleted job until they are this many "
    "days old (0: kept forever).",
)
COUNTERSIGN_RETENTION_BATCH = env_int(
    "COUNTERSIGN_RETENTION_BATCH",
    500,
    "Most jobs deleted in one transaction (whole job trees; a larger tree goes alone), and most "
    "decisions or task results; a beat pass deletes one batch of each.",
)
section("Runtime")
COUNTERSIGN_LEASE_SECONDS = env_float(
    "COUNTERSIGN_LEASE_SECONDS",
    60.0,
    "How long a run owns its job without renewing; a dead run's job is taken over after this.",
)
COUNTERSIGN_HEARTBEAT_SECONDS = env_float(
    "COUNTERSIGN_HEARTBEAT_SECONDS",
    5.0,
    "How often a run renews its lease and checks for a cancel request.",
)
COUNTERSIGN_RECONCILE_GRACE_SECONDS = env_float(
    "COUNTERSIGN_RECONCILE_GRACE_SECONDS",
    30.0,
    "How long a runnable job goes without a message before the reconciler sends another.",
)
COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS = env_float(
    "COUNTERSIGN_RECONCILE_BACKLOG_GRACE_SECONDS",
    900.0,
    "The grace of queued jobs while the broker's queue holds a backlog (no flood of duplicates); "
    "dead runs, due timers and retries keep the normal grace.",
)
COUNTERSIGN_RECONCILE_IDLE_GRACE_SECONDS = env_float(
    "COUNTERSIGN_RECONCILE_IDLE_GRACE_SECONDS",
    2.0,
    "The grace of queued jobs while the broker's queue is empty: their messages were taken "
    "or lost (a broker restarted empty), so they are sent again this soon.",
)
COUNTERSIGN_RECONCILE_BATCH = env_int(
    "COUNTERSIGN_RECONCILE_BATCH", 500, "Most jobs re-sent per reconciler run."
)
COUNTERSIGN_MAX_COUNTDOWN_SECONDS = env_float(
    "COUNTERSIGN_MAX_COUNTDOWN_SECONDS",
    300.0,
    "Timers and retries further off than this get no countdown message; the reconciler fires them "
    "from the database.",
)
COUNTERSIGN_DEFAULT_MAX_ATTEMPTS = env_int(
    "COUNTERSIGN_DEFAULT_MAX_ATTEMPTS",
    3,
    "Attempts per job (counting the first) for handlers without a retry policy of their own.",
)
COUNTERSIGN_RETRY_BACKOFF_SECONDS = env_float(
    "COUNTERSIGN_RETRY_BACKOFF_SECONDS", 2.0, "Base of the default exponential backoff, in seconds."
)
COUNTERSIGN_RETRY_BACKOFF_MAX_SECONDS = env_float(
    "COUNTERSIGN_RETRY_BACKOFF_MAX_SECONDS",
    300.0,
    "Upper limit of the default backoff, in seconds.",
)
COUNTERSIGN_ALLOW_SELF_APPROVAL = env_bool(
    "COUNTERSIGN_ALLOW_SELF_APPROVAL",
    False,
    "Let a job's creator approve its own checkpoints (the four-eyes rule off everywhere; an "
    "organization may turn it off for itself).",
)
COUNTERSIGN_DEFAULT_ORGANIZATION = env_str(
    "COUNTERSIGN_DEFAULT_ORGANIZATION",
    "default",
    "Jobs started without an organization (command line, scripts) belong to this one, created on "
    "first use.",
)
COUNTERSIGN_HANDLER_MODULES = env_list(
    "COUNTERSIGN_HANDLER_MODULES",
    [],
    "Extra modules that register job handlers, comma-separated; the same in every process.",
)
section("Broker and Celery")
COUNTERSIGN_EVENTS_REDIS_URL = env_str(
    "COUNTERSIGN_EVENTS_REDIS_URL",
    REDIS_URL,
    "Redis for live progress events (channel countersign:job:<id>); empty turns them off "
    "(followers then read the database).",
    shown="<REDIS_URL>",
)
section("Metrics")
COUNTERSIGN_METRICS_REDIS_URL = env_str(
    "COUNTERSIGN_METRICS_REDIS_URL",
    REDIS_URL,
    "Redis where every process adds its counters for /metrics; empty: none kept.",
    shown="<REDIS_URL>",
)
COUNTERSIGN_METRICS_PREFIX = env_str(
    "COUNTERSIGN_METRICS_PREFIX",
    "countersign:metrics",
    "Prefix of the metrics' Redis keys (test and benchmark runs use their own).",
)
COUNTERSIGN_METRICS_TOKEN = env_str(
    "COUNTERSIGN_METRICS_TOKEN",
    "",
    "/metrics wants `Authorization: Bearer <token>`; with DEBUG=0 it is off until this is set.",
)

section("Notifications")
COUNTERSIGN_PUBLIC_URL = env_str(
    "COUNTERSIGN_PUBLIC_URL",
    "http://127.0.0.1:8000",
    "Base of the review links in emails and webhooks.",
).rstrip("/")
section("Agents and model providers")
COUNTERSIGN_LLM_TIMEOUT_SECONDS = env_float(
    "COUNTERSIGN_LLM_TIMEOUT_SECONDS", 60.0, "Timeout of one model call."
)
COUNTERSIGN_LLM_MAX_ATTEMPTS = env_int(
    "COUNTERSIGN_LLM_MAX_ATTEMPTS", 4, "Attempts per model call (429, 5xx, timeouts are retried)."
)
COUNTERSIGN_LLM_RETRY_BACKOFF_SECONDS = env_float(
    "COUNTERSIGN_LLM_RETRY_BACKOFF_SECONDS",
    1.0,
    "Base of a model call's backoff when the server gives no Retry-After.",
)
COUNTERSIGN_LLM_MAX_RETRY_WAIT_SECONDS = env_float(
    "COUNTERSIGN_LLM_MAX_RETRY_WAIT_SECONDS",
    60.0,
    "The longest a model call waits before its next attempt.",
)
COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS = env_list(
    "COUNTERSIGN_HTTP_TOOL_ALLOWED_HOSTS",
    [],
    'Hosts the http_request tool may reach ("api.example.com", or ".example.com" for a domain and '
    "its subdomains); empty: none.",
)
COUNTERSIGN_HTTP_TOOL_TIMEOUT_SECONDS = env_float(
    "COUNTERSIGN_HTTP_TOOL_TIMEOUT_SECONDS", 10.0, "Timeout of one http_request tool call."
)
section("Runtime")
COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS = env_float(
    "COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS",
    # Its name before concurrency keys, still honoured until the next release.
    env_float(
        "COUNTERSIGN_AGENT_SLOT_RECHECK_SECONDS",
        300.0,
        "Deprecated name of COUNTERSIGN_CONCURRENCY_RECHECK_SECONDS, read when that is not set.",
    ),
    "A job parked at its concurrency key's limit (an agent's max_concurrency) is queued when a "
    "slot frees, and re-checked after this long in case a run died without freeing its slot.",
    shown="300",
)
COUNTERSIGN_MAX_JOB_DEPTH = env_int(
    "COUNTERSIGN_MAX_JOB_DEPTH",
    5,
    "How deep jobs may start jobs (run_job): a job at this depth cannot start a child.",
)
section("Agents and model providers")
COUNTERSIGN_STREAM_COALESCE_SECONDS = env_float(
    "COUNTERSIGN_STREAM_COALESCE_SECONDS",
    0.05,
    "Streamed model text becomes one llm.delta event per this many seconds, not one per chunk.",
)
section("Notifications")
COUNTERSIGN_WEBHOOK_TIMEOUT_SECONDS = env_float(
    "COUNTERSIGN_WEBHOOK_TIMEOUT_SECONDS", 5.0, "Timeout of one webhook delivery."
)
COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS = env_int(
    "COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS",
    6,
    "Deliveries of one webhook before giving up (network errors, 408, 429, 5xx are retried).",
)
COUNTERSIGN_WEBHOOK_BACKOFF_SECONDS = env_float(
    "COUNTERSIGN_WEBHOOK_BACKOFF_SECONDS", 5.0, "Base of the webhook retries' exponential backoff."
)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
    "How mail is sent: the console in DEBUG, SMTP otherwise.",
    shown="django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_FILE_PATH = env_str(
    "EMAIL_FILE_PATH",
    str(DATA_DIR / "mail"),
    "Folder of the file-based email backend.",
    shown="<COUNTERSIGN_DATA_DIR>/mail",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost", "SMTP server.")
EMAIL_PORT = env_int("EMAIL_PORT", 25, "SMTP port.")
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "", "SMTP user.")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "", "SMTP password.")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False, "SMTP over STARTTLS.")
DEFAULT_FROM_EMAIL = env_str(
    "DEFAULT_FROM_EMAIL", "countersign@localhost", "Sender of notification emails."
)

section("Logs")
LOG_LEVEL = env_str(
    "LOG_LEVEL", "INFO", "Root log level of web, worker and beat (Celery's --loglevel is not used)."
)
LOG_FORMAT = env_str(
    "LOG_FORMAT",
    "text" if DEBUG else "json",
    "json (one object per line; the default with DEBUG=0) or text (the default with DEBUG on).",
    shown="json",
).lower()
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

section("Django and the web")
# Read only with DEBUG off (below), declared here so the reference always lists them.
for _name, _default, _help in (
    (
        "SECURE_SSL_REDIRECT",
        True,
        "With DEBUG=0: redirect HTTP to HTTPS, except /healthz, "
        "/readyz and /metrics (X-Forwarded-Proto: https counts as HTTPS).",
    ),
    ("SECURE_HSTS_SECONDS", 3600, "With DEBUG=0: HSTS max-age in seconds."),
    (
        "SECURE_HSTS_PRELOAD",
        True,
        "With DEBUG=0: mark the site eligible for HSTS preload lists (submission is manual).",
    ),
):
    document(_name, _default, _help)

# Read where they are used, not here.
section("Agents and model providers")
for _provider, _key, _url, _default_url in (
    ("OpenAI", "OPENAI_API_KEY", "OPENAI_BASE_URL", ""),
    ("Anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", ""),
    ("Groq", "GROQ_API_KEY", "GROQ_BASE_URL", ""),
    ("OpenRouter", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", ""),
    ("Ollama", "OLLAMA_API_KEY", "OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1"),
    ("vLLM", "VLLM_API_KEY", "VLLM_BASE_URL", ""),
):
    document(
        _key,
        "",
        f"{_provider}'s API key, read by the workers at call time and never "
        "stored; without any key, agents use the offline provider.",
    )
    document(_url, _default_url, f"{_provider}'s base URL (empty: the provider's own).")
section("Metrics")
document(
    "PROMETHEUS_MULTIPROC_DIR",
    "",
    "Web only, with several uvicorn processes: the folder "
    "where they share their HTTP and database metrics (emptied at each start).",
)
section("Sentry")
document("SENTRY_DSN", "", "Sentry is off unless this is set; secrets and payloads are scrubbed.")
document("SENTRY_ENVIRONMENT", "", "Default: production with DEBUG=0, development otherwise.")
document("SENTRY_RELEASE", "", "Default: the SDK's guess (the git commit); e.g. the image tag.")
document(
    "SENTRY_TRACES_SAMPLE_RATE",
    0,
    "Share of web requests and other Celery tasks sent as transactions (0 to 1).",
)
document(
    "SENTRY_JOB_TRACES_SAMPLE_RATE",
    1,
    "Share of job runs sent as transactions (one per run, named by job type).",
)
section("Command line")
document(
    "COUNTERSIGN_USER",
    "",
    "The acting user of commands that take --as (enqueue, jobs "
    "cancel/retry, checkpoints approve/...).",
)
document(
    "COUNTERSIGN_ADMIN_PASSWORD",
    "admin",
    "Password of the local admin that `bootstrap` creates in DEBUG when there is no superuser.",
)

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
