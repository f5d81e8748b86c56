"""Berth's console settings: one file, read from the environment."""

import os
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


BERTH_ROOT = Path(os.environ.get("BERTH_ROOT", "/var/lib/berth"))
BERTH_RUN_DIR = Path(os.environ.get("BERTH_RUN_DIR", "/run/berth"))
BERTH_DOCKER_SOCKET = os.environ.get("BERTH_DOCKER_SOCKET", str(BERTH_RUN_DIR / "docker.sock"))
# The Celery queue of this host's worker: the console routes a container's tasks to its host.
BERTH_HOST = os.environ.get("BERTH_HOST", socket.gethostname())
# The cgroup parent of every container of this host (tests use one of their own).
BERTH_CGROUP_PARENT = os.environ.get("BERTH_CGROUP_PARENT", "berth")
# Networking's kernel objects, named so that a test stack never touches the host's Berth:
# the nftables table, the prefix of /run/netns/<prefix><id12>, the default network's bridge.
BERTH_NFT_TABLE = os.environ.get("BERTH_NFT_TABLE", "berth")
BERTH_NETNS_PREFIX = os.environ.get("BERTH_NETNS_PREFIX", "berth-")
BERTH_DEFAULT_BRIDGE = os.environ.get("BERTH_DEFAULT_BRIDGE", "berth0")
# Subnets new networks are picked from, in order ("" = the networking layer's: 172.17-31.0.0/16, ...).
BERTH_ADDRESS_POOLS = envlist("BERTH_ADDRESS_POOLS", "")
# The module whose Networking (and BridgeSpec, EndpointSpec, PortSpec) wires containers;
# tests name a stand-in here.
BERTH_NETWORKING = os.environ.get("BERTH_NETWORKING", "runtime.network")
# Seconds a start waits for the embedded DNS to learn a container's name before it answers.
BERTH_DNS_WAIT = float(os.environ.get("BERTH_DNS_WAIT", "2"))

def _secret_key() -> str:
    """From the environment, else the file the set-up wrote once, else a key only fit for tests."""
    if os.environ.get("BERTH_SECRET_KEY"):
        return os.environ["BERTH_SECRET_KEY"]
    path = BERTH_ROOT / "secret_key"
    if path.exists():
        return path.read_text().strip()
    return "berth-insecure-key-for-tests-only"


SECRET_KEY = _secret_key()
DEBUG = envbool("BERTH_DEBUG", False)
ALLOWED_HOSTS = envlist("BERTH_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("BERTH_CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "console.audit.OriginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"

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
                "console.context_processors.user_role",
            ],
        },
    },
]

def _default_database() -> Path:
    """``BERTH_ROOT/db/berth.sqlite3``: a folder of its own, which the web's group may write (SQLite makes its
    -wal and -shm files beside the database) while the rest of the state root stays root's. An install made
    before keeps ``BERTH_ROOT/berth.sqlite3`` until scripts/setup moves it."""
    legacy = BERTH_ROOT / "berth.sqlite3"
    current = BERTH_ROOT / "db" / "berth.sqlite3"
    return legacy if legacy.exists() and not current.exists() else current


_DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{_default_database()}")
DATABASES = {
    "default": dj_database_url.parse(
        _DATABASE_URL,
        # SQLite: keep each thread's connection (a new one costs its PRAGMAs, a few ms on every API call and task).
        conn_max_age=envint("BERTH_DB_CONN_MAX_AGE", 600 if _DATABASE_URL.startswith("sqlite:") else 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes write (web, api, worker): wait for the lock instead of failing, WAL for readers.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Celery's Django fixup closes the connection before and after every task unless this is set: each
    # task then paid a new connection and its PRAGMAs (~0.5 ms, twice per `docker run`). A local file
    # has no server to drop it; the fixup still recycles it after this many tasks.
    CELERY_DB_REUSE_MAX = 500

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Uploads (image import and load) are streamed to a file here, whose path the host's worker reads; the web's
# user must be able to write it (scripts/web-user makes BERTH_ROOT/uploads for its group). Unset: the system's.
FILE_UPLOAD_TEMP_DIR = os.environ.get("BERTH_UPLOAD_DIR") or None

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BERTH_ROOT / "static"

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# BERTH_TLS=1 when the console is served over https (a TLS proxy in front of daphne): cookies are then
# never sent over plain http, and the proxy's X-Forwarded-Proto is trusted so Django knows the request
# was secure. The proxy must set that header itself, overwriting any a client sent.
BERTH_TLS = envbool("BERTH_TLS", False)
SESSION_COOKIE_SECURE = BERTH_TLS
CSRF_COOKIE_SECURE = BERTH_TLS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BERTH_TLS else None
SESSION_COOKIE_HTTPONLY = True  # always: no script reads the session cookie (htmx gets CSRF from <body>)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def celery_redis_url(url: str) -> str:
    """Celery's name for the same Redis: redis-py's ``unix://PATH?db=N`` is ``redis+socket://PATH?virtual_host=N``."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    database = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={database}"


CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # No socket timeout: redis-py's 5 s default would cut channels_redis's own 5 s blocking reads.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                   "prefix": os.environ.get("BERTH_CHANNELS_PREFIX", "berth")},
    }
}

CELERY_BROKER_URL = celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = celery_redis_url(REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = f"host.{BERTH_HOST}"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 3600
# A task that waits longer than this for its host's worker fails instead of hanging a click.
BERTH_TASK_TIMEOUT = envint("BERTH_TASK_TIMEOUT", 120)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("BERTH_LOG_LEVEL", "INFO")},
}
