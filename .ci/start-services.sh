#!/usr/bin/env bash
# Make sure the local services the test suite talks to are up:
#   Redis 127.0.0.1:6379, PostgreSQL 127.0.0.1:5432, MariaDB 127.0.0.1:3306,
#   RabbitMQ 127.0.0.1:5672.
# A service already answering on its port is left alone; one that is not is started
# with the machine's own start command, then we wait (with a deadline) until it
# answers. Exits non-zero, naming the service, if one does not come up.
#
# Settings (environment):
#   CELERYFLOW_SERVICES          services to ensure (default "redis postgres mariadb rabbitmq")
#   CELERYFLOW_SERVICE_DEADLINE  seconds to wait for each service (default 90)
set -euo pipefail

SERVICES="${CELERYFLOW_SERVICES:-redis postgres mariadb rabbitmq}"
DEADLINE="${CELERYFLOW_SERVICE_DEADLINE:-90}"

log() { printf '[start-services] %s\n' "$*" >&2; }

port_open() {  # port_open HOST PORT
    timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

service_port() {
    case "$1" in
        redis) echo 6379 ;;
        postgres) echo 5432 ;;
        mariadb) echo 3306 ;;
        rabbitmq) echo 5672 ;;
        *) log "unknown service: $1"; return 1 ;;
    esac
}

# A service-level "are you ready" check, stronger than an open port where a client
# is installed; falls back to the port check.
service_ready() {
    local name=$1 port
    port=$(service_port "$name")
    port_open 127.0.0.1 "$port" || return 1
    case "$name" in
        redis)
            if command -v redis-cli >/dev/null; then
                [ "$(timeout 5 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ] || return 1
            fi ;;
        postgres)
            if command -v pg_isready >/dev/null; then
                timeout 5 pg_isready -q -h 127.0.0.1 -p 5432 || return 1
            fi ;;
        mariadb)
            if command -v mysqladmin >/dev/null; then
                timeout 5 mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1 || return 1
            fi ;;
        rabbitmq) ;;  # the AMQP listener opens late in RabbitMQ's boot: the port is enough
    esac
}

start_service() {
    local name=$1
    case "$name" in
        redis)
            mkdir -p /var/lib/redis /var/log/redis
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
                --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ;;
        postgres)
            # shellcheck disable=SC2046
            pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start ;;
        mariadb)
            start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd ;;
        rabbitmq)
            rabbitmq-server -detached ;;
    esac
}

failed=()
for name in $SERVICES; do
    port=$(service_port "$name")
    if service_ready "$name"; then
        log "$name is up on 127.0.0.1:$port"
        continue
    fi
    if port_open 127.0.0.1 "$port"; then
        log "$name: port $port is open but the service is not ready yet; waiting"
    else
        log "$name is not answering on 127.0.0.1:$port; starting it"
        if ! start_service "$name"; then
            log "$name: the start command failed"
        fi
    fi
    end=$((SECONDS + DEADLINE))
    until service_ready "$name"; do
        if [ "$SECONDS" -ge "$end" ]; then
            log "$name did not answer on 127.0.0.1:$port within ${DEADLINE}s"
            failed+=("$name")
            break
        fi
        sleep 1
    done
    if service_ready "$name"; then
        log "$name is up on 127.0.0.1:$port"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED to start: ${failed[*]}"
    exit 1
fi
log "all services up: $SERVICES"
