#!/usr/bin/env bash
# The postgres stand-in's entrypoint: what docker-library/postgres's docker-entrypoint.sh does for the
# plan, written here. For `postgres ...` (or arguments that start with "-"), on an empty $PGDATA:
# initdb as POSTGRES_USER (default postgres) with the password from POSTGRES_PASSWORD or the file
# POSTGRES_PASSWORD_FILE, a `host all all all <password_encryption>` line appended to
# $PGDATA/pg_hba.conf, a temporary server on the Unix socket only (the given arguments plus
# listen_addresses=''), CREATE DATABASE POSTGRES_DB when it is missing, every
# /docker-entrypoint-initdb.d/*.sql run with psql as the superuser (ON_ERROR_STOP), and a fast stop.
# Then, in every case, exec the command.
# Not reproduced (the plan runs it as uid 999 with *.sql init files only): the step down from root,
# nss_wrapper for a uid without a passwd entry, POSTGRES_INITDB_ARGS and POSTGRES_INITDB_WALDIR,
# *.sh and compressed init files. Each of those stops the container with a message instead.
set -Eeuo pipefail

INIT_DIR=/docker-entrypoint-initdb.d

die() {
    echo "$0: $*" >&2
    exit 1
}

# NAME from $NAME, else from the file named by $NAME_FILE (never both), else DEFAULT.
from_env_or_file() {
    local name=$1 default=${2:-} file_name="$1_FILE"
    local value=$default
    if [[ -n ${!name:-} && -n ${!file_name:-} ]]; then
        die "both $name and $file_name are set (but are exclusive)"
    elif [[ -n ${!name:-} ]]; then
        value=${!name}
    elif [[ -n ${!file_name:-} ]]; then
        value=$(<"${!file_name}")
    fi
    export "$name=$value"
    unset "$file_name"
}

wants_help() {
    local argument
    for argument; do
        case $argument in
        '-?' | --help | --describe-config | -V | --version) return 0 ;;
        esac
    done
    return 1
}

as_superuser() {
    PGHOST='' PGHOSTADDR='' psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"
}

create_database() {
    local found
    found=$(as_superuser --dbname postgres --set db="$POSTGRES_DB" --tuples-only \
        <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")
    if [[ -z $found ]]; then
        as_superuser --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
}

run_init_files() {
    local file
    for file in "$INIT_DIR"/*; do
        case $file in
        *.sql)
            echo "$0: running $file"
            as_superuser --dbname "$POSTGRES_DB" -f "$file"
            ;;
        *.sh | *.sql.gz | *.sql.xz | *.sql.zst) die "$file: this stand-in runs *.sql init files only" ;;
        *) echo "$0: ignoring $file" ;;
        esac
    done
}

# $@: the server's arguments (without "postgres").
initialise() {
    if [[ -z $POSTGRES_PASSWORD && ${POSTGRES_HOST_AUTH_METHOD:-} != trust ]]; then
        die "the database is uninitialised and no superuser password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
    fi
    ls "$INIT_DIR/" >/dev/null # fail early when the init files cannot be read
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD")
    local method
    method=$(postgres -C password_encryption "$@")
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-$method}" >>"$PGDATA/pg_hba.conf"
    export PGPASSWORD=${PGPASSWORD:-$POSTGRES_PASSWORD}
    PGUSER=${PGUSER:-$POSTGRES_USER} pg_ctl -D "$PGDATA" -w start \
        -o "$(printf '%q ' "$@" -c listen_addresses='' -p "${PGPORT:-5432}")"
    create_database
    run_init_files
    PGUSER=${PGUSER:-$POSTGRES_USER} pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo "$0: PostgreSQL init process complete; ready for start up."
}

main() {
    if [[ ${1:0:1} == - ]]; then
        set -- postgres "$@"
    fi
    if [[ $1 == postgres ]] && ! wants_help "$@"; then
        [[ $(id -u) != 0 ]] || die "this stand-in does not step down from root: run it as the postgres user (uid 999)"
        [[ -z ${POSTGRES_INITDB_ARGS:-}${POSTGRES_INITDB_WALDIR:-} ]] ||
            die "POSTGRES_INITDB_ARGS and POSTGRES_INITDB_WALDIR are not supported by this stand-in"
        from_env_or_file POSTGRES_PASSWORD
        from_env_or_file POSTGRES_USER postgres
        from_env_or_file POSTGRES_DB "$POSTGRES_USER"
        mkdir -p "$PGDATA"
        chmod 00700 "$PGDATA" || :
        mkdir -p /var/run/postgresql || :
        chmod 03775 /var/run/postgresql || :
        if [[ -s $PGDATA/PG_VERSION ]]; then
            echo "$0: the database directory contains a database; skipping initialisation"
        else
            initialise "${@:2}"
        fi
    fi
    exec "$@"
}

main "$@"
