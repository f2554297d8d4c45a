# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Shared by deploy.sh, backup.sh and restore.sh (sourced, not run).
#
# Every command that touches the stack goes through ONE overridable variable, COMPOSE
# (default: docker compose on deploy/docker-compose.yml with .env.production). The
# tests point it at a stand-in that runs `exec <service> <cmd>` against local servers,
# so the scripts under test are the shipped ones. Paths *inside* the containers are
# variables too (ESPOCRM_HTML_DIR, MAXCORE_DATA_PATH, MAXCORE_CONFIG_PATH).

DEPLOY_DIR=${DEPLOY_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
ENV_FILE=${ENV_FILE:-$DEPLOY_DIR/.env.production}
COMPOSE=${COMPOSE:-docker compose --project-directory $DEPLOY_DIR -f $DEPLOY_DIR/docker-compose.yml --env-file $ENV_FILE}
ESPOCRM_HTML_DIR=${ESPOCRM_HTML_DIR:-/var/www/html}
MAXCORE_DATA_PATH=${MAXCORE_DATA_PATH:-/data}
MAXCORE_CONFIG_PATH=${MAXCORE_CONFIG_PATH:-/config}
DRY_RUN=${DRY_RUN:-0}

# COMPOSE is split on spaces into the command array (keep its paths free of spaces).
read -r -a COMPOSE_CMD <<< "$COMPOSE"

log() { printf '%s %s\n' "$(date -u +%H:%M:%SZ)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

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

# The parts of a backup, in restore order: file name and what it holds.
BACKUP_PARTS=(mariadb.sql.gz espocrm-html.tar.gz maxcore-data.tar.gz maxcore-config.tar.gz)
