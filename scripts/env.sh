# Defaults shared by the set-up, start and stop scripts; each can be overridden from the environment.
export BERTH_ROOT="${BERTH_ROOT:-/var/lib/berth}"
export BERTH_RUN_DIR="${BERTH_RUN_DIR:-/run/berth}"
export BERTH_LOG_DIR="${BERTH_LOG_DIR:-/var/log/berth}"
export BERTH_DOCKER_SOCKET="${BERTH_DOCKER_SOCKET:-$BERTH_RUN_DIR/docker.sock}"
# Berth's own Redis listens on a unix socket only the group may open: whoever can queue a Celery task
# commands the root worker, so a Redis on TCP (any local user may connect) would be root-equivalent.
export BERTH_REDIS_SOCKET="${BERTH_REDIS_SOCKET:-$BERTH_RUN_DIR/redis/redis.sock}"
export REDIS_URL="${REDIS_URL:-unix://$BERTH_REDIS_SOCKET?db=0}"
export BERTH_WEB_ADDRESS="${BERTH_WEB_ADDRESS:-127.0.0.1}"
export BERTH_WEB_PORT="${BERTH_WEB_PORT:-8000}"
export BERTH_HOST="${BERTH_HOST:-$(hostname)}"
export DJANGO_SETTINGS_MODULE=console.settings
# The web process runs as this user (scripts/web-user makes it); "root" runs it as root, as before.
export BERTH_WEB_USER="${BERTH_WEB_USER:-berth-web}"
# The group that may read the containers' logs, use the database and reach the Docker API socket.
export BERTH_GROUP="${BERTH_GROUP:-berth}"
export BERTH_UPLOAD_DIR="${BERTH_UPLOAD_DIR:-$BERTH_ROOT/uploads}"
