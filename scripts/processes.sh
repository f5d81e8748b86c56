# Shared by scripts/start and scripts/redis: background processes with pid files under $BERTH_RUN_DIR and
# logs under $BERTH_LOG_DIR (both from scripts/env.sh).

running() {
    local pidfile="$BERTH_RUN_DIR/$1.pid"
    [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

launch() {
    local name=$1; shift
    running "$name" && return 0
    nohup "$@" >>"$BERTH_LOG_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$BERTH_RUN_DIR/$name.pid"
}

wait_for() {
    local what=$1 check=$2
    for _ in $(seq 1 100); do
        eval "$check" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$what did not come up; see $BERTH_LOG_DIR" >&2
    exit 1
}
