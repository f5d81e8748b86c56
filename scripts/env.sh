# Defaults shared by the set-up, start and stop scripts; each can be overridden from the environment.
export BERTH_ROOT="${BERTH_ROOT:-/var/lib/berth}"
export BERTH_RUN_DIR="${BERTH_RUN_DIR:-/run/berth}"
export BERTH_LOG_DIR="${BERTH_LOG_DIR:-/var/log/berth}"
export BERTH_DOCKER_SOCKET="${BERTH_DOCKER_SOCKET:-$BERTH_RUN_DIR/docker.sock}"
export BERTH_REDIS_PORT="${BERTH_REDIS_PORT:-6379}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$BERTH_REDIS_PORT/0}"
export BERTH_WEB_ADDRESS="${BERTH_WEB_ADDRESS:-127.0.0.1}"
export BERTH_WEB_PORT="${BERTH_WEB_PORT:-8000}"
export BERTH_HOST="${BERTH_HOST:-$(hostname)}"
export DJANGO_SETTINGS_MODULE=console.settings
