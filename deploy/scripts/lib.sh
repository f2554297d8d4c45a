# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Shared by deploy.sh, backup.sh and restore.sh (sourced, not run).
#
# Every command that touches the stack goes through ONE overridable variable, COMPOSE
# (default: docker compose on the files of COMPOSE_FILE, below, with .env.production).
# The tests point it at a stand-in that runs `exec <service> <cmd>` against local servers,
# so the scripts under test are the shipped ones. Paths *inside* the containers are
# variables too (ESPOCRM_HTML_DIR, MAXCORE_DATA_PATH).

DEPLOY_DIR=${DEPLOY_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
ENV_FILE=${ENV_FILE:-$DEPLOY_DIR/.env.production}
# What docker-compose.yml mounts or reads (the same variables, exported for Compose).
export MAXCORE_ENV_FILE=${MAXCORE_ENV_FILE:-$DEPLOY_DIR/maxcore.env}
export MAXCORE_CONFIG_DIR=${MAXCORE_CONFIG_DIR:-$DEPLOY_DIR/config}
export SSL_DIR=${SSL_DIR:-$DEPLOY_DIR/nginx/ssl}
ESPOCRM_HTML_DIR=${ESPOCRM_HTML_DIR:-/var/www/html}
MAXCORE_DATA_PATH=${MAXCORE_DATA_PATH:-/data}

DRY_RUN=${DRY_RUN:-0}

log() { printf '%s %s\n' "$(date -u +%H:%M:%SZ)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# env_value NAME [FILE]: the last NAME=value of an env file (default ENV_FILE), unquoted.
env_value() {
  local file=${2:-$ENV_FILE}
  [ -f "$file" ] || return 0
  { grep -E "^$1=" "$file" || true; } | tail -n 1 | cut -d= -f2- | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\\(.*\\)'\$/\\1/"
}

# The layout: COMPOSE_FILE, Compose's own variable, from the environment or ENV_FILE (in
# that order, as Compose reads it), files relative to deploy/. A hand-run
# `docker compose --env-file .env.production ...` in deploy/ then runs the same files.
#   unset                                        one maxcore process (--role all)
#   docker-compose.yml:docker-compose.split.yml  maxcore (--role web) + maxcore-worker
# MAXCORE_SERVICES: the layout's maxcore services (what a rollback recreates, a restore stops).
COMPOSE_FILE=${COMPOSE_FILE:-$(env_value COMPOSE_FILE)}
COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.yml}
MAXCORE_SERVICES=(maxcore)
case ":$COMPOSE_FILE:" in
  *[:/]docker-compose.split.yml:*) MAXCORE_SERVICES=(maxcore maxcore-worker) ;;
esac
if [ -z "${COMPOSE:-}" ]; then
  COMPOSE="docker compose --project-directory $DEPLOY_DIR"
  IFS=: read -r -a compose_files <<< "$COMPOSE_FILE"
  for compose_file in "${compose_files[@]}"; do
    [[ $compose_file == /* ]] || compose_file=$DEPLOY_DIR/$compose_file
    [ -f "$compose_file" ] || die "COMPOSE_FILE ($COMPOSE_FILE) names $compose_file, which does not exist"
    COMPOSE+=" -f $compose_file"
  done
  COMPOSE+=" --env-file $ENV_FILE"
fi

# COMPOSE is split on spaces into the command array (keep its paths free of spaces).
read -r -a COMPOSE_CMD <<< "$COMPOSE"

# compose ARGS...: run the stack command (printed instead under --dry-run).
compose() {
  if [ "$DRY_RUN" = 1 ]; then
    printf 'would run: %s\n' "${COMPOSE_CMD[*]} $*" >&2
    return 0
  fi
  "${COMPOSE_CMD[@]}" "$@"
}

# in_service SERVICE CMD...: run CMD inside a running service (stdin/stdout pass through).
in_service() {
  local service=$1
  shift
  compose exec -T "$service" "$@"
}

# in_oneoff SERVICE USER SCRIPT ARGS...: run `sh -c SCRIPT sh ARGS...` in a one-off
# container of SERVICE (its image and volumes, nothing else started): works while the
# service itself is stopped.
in_oneoff() {
  local service=$1 user=$2 script=$3
  shift 3
  compose run --rm --no-deps -T -u "$user" --entrypoint sh "$service" -c "$script" sh "$@"
}

# restic_env: export the restic settings of ENV_FILE (repository, password, off-site).
restic_env() {
  RESTIC_REPOSITORY=${RESTIC_REPOSITORY:-$(env_value RESTIC_REPOSITORY)}
  RESTIC_PASSWORD=${RESTIC_PASSWORD:-$(env_value RESTIC_PASSWORD)}
  RESTIC_OFFSITE_REPOSITORY=${RESTIC_OFFSITE_REPOSITORY:-$(env_value RESTIC_OFFSITE_REPOSITORY)}
  RESTIC_OFFSITE_PASSWORD=${RESTIC_OFFSITE_PASSWORD:-$(env_value RESTIC_OFFSITE_PASSWORD)}
  [ -n "$RESTIC_REPOSITORY" ] || die "RESTIC_REPOSITORY is empty in $ENV_FILE"
  [ -n "$RESTIC_PASSWORD" ] || die "RESTIC_PASSWORD is empty in $ENV_FILE"
  export RESTIC_REPOSITORY RESTIC_PASSWORD
}
RESTIC=${RESTIC:-restic}

# run CMD...: a host command, printed instead under --dry-run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf 'would run: %s\n' "$*" >&2
    return 0
  fi
  "$@"
}

# The MariaDB client commands, run inside the mariadb container with the credentials
# of its own environment (the password never appears on a command line).
# shellcheck disable=SC2016 # expanded by the container's shell, not this one
MARIADB_DUMP='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb-dump --user=root --single-transaction --quick --routines --triggers --events --hex-blob --databases "$MARIADB_DATABASE"'
# shellcheck disable=SC2016
MARIADB_COUNT_TABLES='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb --user=root --batch --skip-column-names -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '"'"'$MARIADB_DATABASE'"'"'"'
# shellcheck disable=SC2016
MARIADB_RECREATE_AND_LOAD='MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb --user=root -e "DROP DATABASE IF EXISTS \`$MARIADB_DATABASE\`" && MYSQL_PWD="$MARIADB_ROOT_PASSWORD" exec mariadb --user=root'

# set_env_value NAME VALUE [FILE]: replace (or append) NAME=VALUE, keeping the file's
# owner and mode (it is rewritten in place, never recreated).
set_env_value() {
  local name=$1 value=$2 file=${3:-$ENV_FILE} content
  content=$(grep -vE "^$name=" "$file" || true)
  printf '%s\n%s=%s\n' "$content" "$name" "$value" > "$file"
}

# The parts of a backup, in restore order: file name and what it holds.
#   mariadb.sql.gz        the database (mariadb-dump --single-transaction)
#   espocrm-html.tar.gz   the EspoCRM volume (data/, custom/, config) without data/cache
#   maxcore-data.tar.gz   the maxcore volume, its SQLite databases copied consistently
#   maxcore-config.tar.gz deploy/config (maxcore.yaml, tenants/)
#   host-files.tar.gz     .env.production, maxcore.env, origin.pem and origin.key
BACKUP_PARTS=(mariadb.sql.gz espocrm-html.tar.gz maxcore-data.tar.gz maxcore-config.tar.gz host-files.tar.gz)
# Names inside host-files.tar.gz and where each one lives on this host.
host_file_path() {
  case $1 in
    env.production) echo "$ENV_FILE" ;;
    maxcore.env) echo "$MAXCORE_ENV_FILE" ;;
    origin.pem) echo "$SSL_DIR/origin.pem" ;;
    origin.key) echo "$SSL_DIR/origin.key" ;;
  esac
}
HOST_FILES=(env.production maxcore.env origin.pem origin.key)
