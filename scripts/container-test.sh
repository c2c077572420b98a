#!/usr/bin/env bash
# The container test: build storeflow's image and run compose.yaml + compose.sandbox.yaml for real
# with podman, on a machine that reaches Debian's packages but no container registry.
#
#   bash scripts/container-test.sh           # the whole test; last line `container: N passed, M failed`
#   bash scripts/container-test.sh --probe   # exit 0 when podman can run a container here (used by .ci/run)
#
# As root it installs what is missing (podman, runc, mmdebstrap) and writes
# /etc/containers/containers.conf when there is none. Base images are made with mmdebstrap
# (a Python base and a PostgreSQL base, cached as tarballs under build/container/); storeflow's
# image is built from the local Python base with `--build-arg BASE=...` and the wheels pip builds on
# the host (build/wheels/pyX.Y: pip inside a container does not see the host's package index).
# The stack runs in build/container/project (copies of the two compose files, .env from
# .env.example, storeflow.toml from storeflow.example.toml), so a developer's own .env, data and
# sessions are never touched. STOREFLOW_IMAGE and POSTGRES_IMAGE swap in the local images; nothing
# else differs from what a user runs. Everything is torn down at the end, also on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/build/container
PROJECT=$CACHE/project
LOG=$CACHE/container-test.log
NAME=storeflow-ct
BASE_IMAGE=localhost/storeflow-base:bookworm
PG_BASE_IMAGE=localhost/storeflow-postgres-base:bookworm
PG_IMAGE=localhost/storeflow-postgres:bookworm
IMAGE=localhost/storeflow:container-test
PORT=${CONTAINER_TEST_PORT:-18980}
# runc + cgroupfs: the default crun fails on hybrid cgroup hierarchies (measured on our machines)
read -r -a PODMAN_FLAGS <<<"${CONTAINER_TEST_PODMAN_FLAGS:---runtime runc --cgroup-manager=cgroupfs}"
DEBIAN_PKGS=(podman runc mmdebstrap)
export DEBIAN_FRONTEND=noninteractive

mkdir -p "$CACHE"
pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }
say() { echo "container-test: $*"; }

# ---------------------------------------------------------------- machine

install_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            say "missing ${missing[*]} and cannot install them (needs root and apt-get)"
            return 1
        fi
        say "installing ${DEBIAN_PKGS[*]}"
        apt-get install -y -q "${DEBIAN_PKGS[@]}" >>"$LOG" 2>&1 \
            || { apt-get update -q >>"$LOG" 2>&1 && apt-get install -y -q "${DEBIAN_PKGS[@]}" >>"$LOG" 2>&1; } \
            || { say "apt-get install ${DEBIAN_PKGS[*]} failed (see $LOG)"; return 1; }
    fi
    if [ "$(id -u)" = 0 ] && [ ! -e /etc/containers/containers.conf ]; then
        # raising RLIMIT_NOFILE, podman's default, is not permitted in our machines' sandbox
        mkdir -p /etc/containers
        printf '[containers]\ndefault_ulimits = []\n' >/etc/containers/containers.conf
        say "wrote /etc/containers/containers.conf (default_ulimits = [])"
    fi
}

# A Debian bookworm image made with mmdebstrap from Debian's packages; the tarball is cached.
debian_image() {
    local image=$1 tar=$2 include=$3
    local partial=${tar%.tar}.partial.tar  # mmdebstrap picks its output format by the name's ending
    pm image exists "$image" && return 0
    if [ ! -f "$tar" ]; then
        say "mmdebstrap $include -> $tar"
        rm -rf "$partial" "$tar"
        mmdebstrap --variant=minbase --include="$include" \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
            bookworm "$partial" >>"$LOG" 2>&1 || { rm -rf "$partial"; return 1; }
        mv "$partial" "$tar"
    fi
    pm import "$tar" "$image" >>"$LOG" 2>&1
}

probe() {
    install_tools || return 1
    debian_image "$BASE_IMAGE" "$CACHE/base-bookworm.tar" ca-certificates,python3,python3-venv || return 1
    pm run --rm --network=host "$BASE_IMAGE" true >>"$LOG" 2>&1
}

if [ "${1:-}" = "--probe" ]; then
    : >"$LOG"
    if probe; then say "podman runs containers here"; exit 0; fi
    say "podman cannot run containers here (see $LOG)"
    tail -n 5 "$LOG" | sed 's/^/    /'
    exit 1
fi

# ---------------------------------------------------------------- checks

passed=0
failed=0
check() {  # check NAME COMMAND...: one line per check; the command's output goes to the log
    local name=$1
    shift
    echo "--- check: $name" >>"$LOG"
    if "$@" >>"$LOG" 2>&1; then
        passed=$((passed + 1))
        echo "  ok    $name"
    else
        failed=$((failed + 1))
        echo "  FAIL  $name"
        grep -v '^time=.*systemd' "$LOG" | tail -n 15 | sed 's/^/        /'
    fi
}

finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -d "$PROJECT" ] && [ -x "$CACHE/venv/bin/podman-compose" ]; then
        compose --profile cli down -v -t 5 >>"$LOG" 2>&1 || true
    fi
    for c in $(pm ps -aq --filter "label=io.podman.compose.project=$NAME" 2>/dev/null); do
        pm rm -f -t 2 "$c" >>"$LOG" 2>&1 || true
    done
    if [ "$passed" = 0 ] && [ "$failed" = 0 ]; then failed=1; fi
    echo "container: $passed passed, $failed failed"
    [ "$failed" = 0 ] && [ "$rc" = 0 ] && exit 0
    exit 1
}

compose() {  # podman-compose in the test project, bounded in time
    (cd "$PROJECT" && STOREFLOW_IMAGE=$IMAGE POSTGRES_IMAGE=$PG_IMAGE STOREFLOW_PORT=$PORT \
        timeout 600 "$CACHE/venv/bin/podman-compose" --podman-args="${PODMAN_FLAGS[*]}" -p "$NAME" \
        -f compose.yaml -f compose.sandbox.yaml "$@")
}
oneoff() { compose --profile cli run -T --rm storeflow "$@"; }  # -T: CI has no terminal
container() { echo "${NAME}_$1_1"; }
in_sandbox() {  # in_sandbox PATH: GET a simulator URL from inside the sandbox container
    pm exec "$(container sandbox)" python3 -c \
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())" \
        "http://127.0.0.1:$1"
}
psql_value() { pm exec "$(container postgres)" psql -U storeflow -d storeflow -tAc "$1"; }
wait_for() {  # wait_for SECONDS COMMAND...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && { "$@"; return 1; }
        sleep 2
    done
}

# ---------------------------------------------------------------- build

: >"$LOG"
trap finish EXIT
trap 'exit 130' INT TERM
started=$SECONDS
install_tools || exit 1

if [ ! -x "$CACHE/venv/bin/podman-compose" ]; then
    say "installing podman-compose into $CACHE/venv"
    python3 -m venv "$CACHE/venv" >>"$LOG" 2>&1 && "$CACHE/venv/bin/pip" install -q podman-compose >>"$LOG" 2>&1 \
        || { say "pip install podman-compose failed (see $LOG)"; exit 1; }
fi

say "base images"
debian_image "$BASE_IMAGE" "$CACHE/base-bookworm.tar" ca-certificates,python3,python3-venv \
    || { say "the Python base image could not be made (see $LOG)"; exit 1; }
if ! pm image exists "$PG_IMAGE"; then
    debian_image "$PG_BASE_IMAGE" "$CACHE/postgres-bookworm.tar" ca-certificates,postgresql \
        || { say "the PostgreSQL base image could not be made (see $LOG)"; exit 1; }
    mkdir -p "$CACHE/postgres"
    # the official postgres image's interface: POSTGRES_USER/PASSWORD/DB, data in /var/lib/postgresql/data
    cat >"$CACHE/postgres/entrypoint.sh" <<'SH'
#!/bin/sh
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --encoding=UTF8 --locale=C.UTF-8 --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "${POSTGRES_DB:-$POSTGRES_USER}" != postgres ]; then
        createdb -U "$POSTGRES_USER" "${POSTGRES_DB:-$POSTGRES_USER}" 2>/dev/null || true
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA"
SH
    cat >"$CACHE/postgres/Containerfile" <<EOF
FROM $PG_BASE_IMAGE
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
RUN chmod 0755 /usr/local/bin/postgres-entrypoint \\
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \\
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 0700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:\$PATH PGDATA=/var/lib/postgresql/data
USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT ["postgres-entrypoint"]
EOF
    pm build --network=host --format docker -t "$PG_IMAGE" "$CACHE/postgres" >>"$LOG" 2>&1 \
        || { say "the PostgreSQL image could not be built (see $LOG)"; exit 1; }
fi

py_host=$(python3 -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
py_base=$(pm run --rm --network=host "$BASE_IMAGE" python3 -c 'import sys; print("py%d.%d" % sys.version_info[:2])')
if [ "$py_host" != "$py_base" ]; then
    say "the host's python3 is $py_host but the base image's is $py_base: the wheels would not fit"
    exit 1
fi
say "wheels -> build/wheels/$py_host"
build_started=$SECONDS
"$CACHE/venv/bin/pip" wheel -q --find-links "build/wheels/$py_host" -w "build/wheels/$py_host" \
    . 'setuptools>=68' wheel >>"$LOG" 2>&1 || { say "pip wheel failed (see $LOG)"; exit 1; }
# the image builds storeflow's own wheel from src/; without a fresh one here, an unchanged tree is a cached build
rm -f "build/wheels/$py_host"/storeflow-*.whl
say "podman build --build-arg BASE=$BASE_IMAGE -t $IMAGE"
pm build --network=host --format docker --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE" . >>"$LOG" 2>&1 \
    || { say "the image did not build (see $LOG)"; exit 1; }
build_seconds=$((SECONDS - build_started))
say "image $IMAGE: $(pm images --format '{{.Size}}' "$IMAGE"), built in ${build_seconds}s (wheels + podman build)"

# ---------------------------------------------------------------- the stack

[ -d "$PROJECT" ] && { compose --profile cli down -v -t 5 >>"$LOG" 2>&1 || true; }
rm -rf "$PROJECT"
mkdir -p "$PROJECT"/{data,sessions,logs,profiles,downloads,search_results}
cp compose.yaml compose.sandbox.yaml "$PROJECT/"
cp .env.example "$PROJECT/.env"
cp storeflow.example.toml "$PROJECT/storeflow.toml"
# the image's user (uid 10001) writes the mounted directories, as docs/deploy.md says to arrange
chown -R 10001:10001 "$PROJECT"/{data,sessions,logs,profiles,downloads} 2>/dev/null \
    || chmod 0777 "$PROJECT"/{data,sessions,logs,profiles,downloads}

say "podman-compose -f compose.yaml -f compose.sandbox.yaml up -d"
compose up -d >>"$LOG" 2>&1 || { say "compose up failed (see $LOG)"; exit 1; }

health() { python3 -c 'import json, sys, urllib.request
body = json.load(urllib.request.urlopen(sys.argv[1], timeout=5))
print(body)
sys.exit(body.get("status") != "ok")' "http://127.0.0.1:$PORT/health"; }
check "/health answers on the published port" wait_for 180 health
check "the web container's healthcheck passes" pm healthcheck run "$(container web)"
check "storeflow doctor passes inside the storeflow service" oneoff doctor

today=$(date -u +%F)
yesterday=$(date -u -d yesterday +%F)
crm_facts() {
    oneoff crm_download bootstrap --crm td --store a668 --headless || return 1
    oneoff crm_download download --crm td --store a668 --from "$yesterday" --to "$today" || return 1
    local truth rows
    truth=$(in_sandbox "18001/_sandbox/truth?store=a668&from=$yesterday&to=$today") || return 1
    rows=$(psql_value "SELECT count(*) FROM fact_td_orders WHERE store_code = 'a668' AND order_date BETWEEN '$yesterday' AND '$today'")
    echo "truth: $truth; fact_td_orders rows: $rows"
    python3 -c 'import json, sys; truth = json.loads(sys.argv[1]); sys.exit(truth["rows"] != int(sys.argv[2]) or int(sys.argv[2]) == 0)' \
        "$truth" "$rows"
}
check "a CRM download (td a668, browser + OTP) lands its facts in the compose postgres" crm_facts
private() { [ "$(stat -c %a "$1")" = 600 ] && ls -l "$1"; }
check "the CRM profile is mode 0600 on the host" private "$PROJECT/profiles/td_a668.json"

labels() {  # the simulator's labels for CT01 are the valid products storeflow holds for it (one per variant)
    local body expected
    body=$(in_sandbox "18003/_sandbox/products?store_code=CT01") || return 1
    expected=$(psql_value "SELECT count(*) FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
        WHERE m.hipoink_store_code = 'CT01' AND p.status = 'valid'") || return 1
    echo "$body" | python3 -c 'import json, sys
labels, expected = json.load(sys.stdin).get("count"), int(sys.argv[1])
print(f"labels {labels}, valid products {expected}")
sys.exit(expected == 0 or labels != expected)' "$expected"
}
esl_labels() {
    oneoff esl mappings add --shop container-test.myshopify.com --store CT01 || return 1
    oneoff sh -c 'storeflow sandbox shopify send --url http://web:8000 --secret "$SHOPIFY_WEBHOOK_SECRET" \
        --topic products/create --count 5 --shop container-test.myshopify.com --seed 3' || return 1
    wait_for 120 labels
}
check "signed Shopify webhooks to web end on the Hipoink simulator's labels" esl_labels

hallmark_order() {
    local order
    order=$(oneoff python3 -c 'from storeflow.sandbox.hallmark import HallmarkSimulator
sim = HallmarkSimulator(seed=0)
print(sorted(o for o, v in sim.orders.items() if v.created)[0])' | tail -n 1) || return 1
    echo "order id: $order"
    oneoff hallmark --order-id "$order" || return 1
    find "$PROJECT/data" -name "order_$order.json" | grep -q . || return 1
    private "$PROJECT/sessions/hallmark_session.json" || return 1
    oneoff hallmark import || return 1
    [ "$(psql_value "SELECT count(*) FROM orders WHERE order_id = '$order'")" = 1 ]
}
check "a one-off hallmark --order-id (webhook MFA) writes ./data and a 0600 session; hallmark import loads it" \
    hallmark_order

non_root() {
    local svc users
    for svc in postgres sandbox web esl-worker; do
        users=$(pm top "$(container "$svc")" user | tail -n +2 | sort -u | tr '\n' ' ')
        echo "$svc runs as: $users"
        case " $users" in *" root "*) return 1 ;; esac
    done
    [ "$(oneoff sh -c 'id -u' | tail -n 1)" != 0 ]
}
check "every container runs as non-root" non_root

say "done in $((SECONDS - started))s"
