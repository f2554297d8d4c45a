#!/usr/bin/env bash
# Restore a backup made by backup.sh into the running stack. Verifies every checksum
# first and refuses a damaged or incomplete backup before touching anything; refuses to
# overwrite existing data unless --force. Order: nginx stopped (no webhook comes in),
# database, EspoCRM volume, maxcore data and config, services restarted, nginx started.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--force] [--verify-only] [--dry-run] [--help] BACKUP_DIR

  BACKUP_DIR     a directory written by backup.sh (maxcore-YYYYmmddTHHMMSSZ)
  --force        overwrite the database and volumes even if they hold data
  --verify-only  check the checksums and archives, restore nothing
  --dry-run      verify, then print what would run, change nothing
  --help         this text

Restores mariadb.sql.gz (the database is dropped and recreated), espocrm-html.tar.gz
into ${ESPOCRM_HTML_DIR}, maxcore-data.tar.gz into ${MAXCORE_DATA_PATH} and
maxcore-config.tar.gz into ${MAXCORE_CONFIG_PATH} (when that mount is writable; the
production mount is read-only: the archive is then only verified and you copy it
back to deploy/config yourself).
Stack commands go through \$COMPOSE (now: ${COMPOSE}).
USAGE
}

force=0
verify_only=0
backup=
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1; shift ;;
    --verify-only) verify_only=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [ -z "$backup" ] || die "only one BACKUP_DIR, got: $backup and $1"; backup=$1; shift ;;
  esac
done
[ -n "$backup" ] || { usage >&2; die "BACKUP_DIR is required"; }
[ -d "$backup" ] || die "no such backup directory: $backup"

# 1. Verify everything before changing anything.
[ -f "$backup/SHA256SUMS" ] || die "refusing to restore: $backup/SHA256SUMS is missing"
for part in "${BACKUP_PARTS[@]}"; do
  grep -q "  $part\$" "$backup/SHA256SUMS" \
    || die "refusing to restore: $part is not listed in SHA256SUMS (incomplete backup)"
done
if ! (cd "$backup" && sha256sum --check --strict --quiet SHA256SUMS); then
  die "refusing to restore: checksum mismatch in $backup (the backup is damaged; use another one)"
fi
for part in "${BACKUP_PARTS[@]}"; do
  gzip -t "$backup/$part" 2>/dev/null || die "refusing to restore: $part is not a valid archive"
done
log "verified: every checksum of $backup matches"
[ "$verify_only" = 1 ] && exit 0

# 2. Refuse to overwrite data without --force.
if [ "$force" != 1 ] && [ "$DRY_RUN" != 1 ]; then
  tables=$(in_service mariadb sh -c "$MARIADB_COUNT_TABLES" | tr -d '[:space:]')
  [[ $tables =~ ^[0-9]+$ ]] || die "cannot count the tables of the database (got: '$tables')"
  if [ "$tables" -gt 0 ]; then
    die "the database already has $tables table(s); restoring replaces them: re-run with --force"
  fi
  for target in "espocrm:$ESPOCRM_HTML_DIR" "maxcore:$MAXCORE_DATA_PATH"; do
    service=${target%%:*}
    path=${target#*:}
    if [ -n "$(in_service "$service" find "$path" -mindepth 1 -maxdepth 1 -print -quit)" ]; then
      die "$service:$path is not empty; restoring replaces it: re-run with --force"
    fi
  done
fi

# 3. Restore. Webhooks stop at nginx while data changes underneath (Green-API retries).
log "stopping nginx (no inbound traffic during the restore)"
compose stop nginx
restart_nginx() { compose start nginx >/dev/null 2>&1 || true; }
trap restart_nginx EXIT

# Run by the container's shell with the target directory as $1.
# shellcheck disable=SC2016
EMPTY_AND_UNPACK='find "$1" -mindepth 1 -delete && tar -C "$1" -xzf -'
# shellcheck disable=SC2016
IS_WRITABLE='test -w "$1"'

# restore_files SERVICE PATH ARCHIVE: empty PATH in SERVICE, then unpack ARCHIVE there.
restore_files() {
  local service=$1 path=$2 archive=$3
  log "restore: $archive -> $service:$path"
  in_service "$service" sh -c "$EMPTY_AND_UNPACK" sh "$path" < "$backup/$archive"
}

log "restore: mariadb.sql.gz -> database (dropped and recreated)"
if [ "$DRY_RUN" = 1 ]; then
  in_service mariadb sh -c "$MARIADB_RECREATE_AND_LOAD"
else
  gzip -dc "$backup/mariadb.sql.gz" | in_service mariadb sh -c "$MARIADB_RECREATE_AND_LOAD"
fi
restore_files espocrm "$ESPOCRM_HTML_DIR" espocrm-html.tar.gz
restore_files maxcore "$MAXCORE_DATA_PATH" maxcore-data.tar.gz
if in_service maxcore sh -c "$IS_WRITABLE" sh "$MAXCORE_CONFIG_PATH"; then
  restore_files maxcore "$MAXCORE_CONFIG_PATH" maxcore-config.tar.gz
else
  log "config mount is read-only: unpack $backup/maxcore-config.tar.gz into deploy/config yourself"
fi

log "restarting espocrm, espocrm-daemon and maxcore on the restored data"
compose restart espocrm espocrm-daemon maxcore
trap - EXIT
compose start nginx
log "restore of $backup complete"
