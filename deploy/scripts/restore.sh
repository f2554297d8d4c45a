#!/usr/bin/env bash
# Restore a backup made by backup.sh (a restic snapshot, or a directory of its parts)
# into the stack. Verifies every checksum first and refuses a damaged or incomplete
# backup before touching anything; refuses to overwrite existing data unless --force.
# The writers are stopped first (nginx, maxcore and its worker in the two-process layout,
# the EspoCRM daemon, EspoCRM), so nothing writes into a file that is being replaced; the
# database is loaded into the running MariaDB, the volumes are unpacked by one-off
# containers, then the stack is started and waited for.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--force] [--verify-only] [--dry-run] [--help] SNAPSHOT|latest
       $(basename "$0") [options] --dir BACKUP_DIR

  SNAPSHOT       a restic snapshot id printed by backup.sh (or latest), read from
                 RESTIC_REPOSITORY of $ENV_FILE (RESTIC_REPOSITORY=<off-site> to
                 restore from the off-site copy)
  --dir DIR      a directory holding the parts (a snapshot restored by hand)
  --force        overwrite the database and volumes even if they hold data
  --verify-only  check the checksums and archives, restore nothing
  --dry-run      verify, then print what would run, change nothing
  --help         this text

Restores mariadb.sql.gz (the database is dropped and recreated), espocrm-html.tar.gz
into ${ESPOCRM_HTML_DIR}, maxcore-data.tar.gz into ${MAXCORE_DATA_PATH}. The host files
(.env.production, maxcore.env, the certificate and key) and deploy/config are put back
where they are missing; an existing one that differs is left alone and the backup's
version written next to it as <name>.restored (compare, then move it by hand).
Stack commands go through \$COMPOSE (now: ${COMPOSE}).
USAGE
}

force=0
verify_only=0
source_dir=
snapshot=
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1; shift ;;
    --verify-only) verify_only=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --dir) source_dir=${2:?--dir needs a directory}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [ -z "$snapshot" ] || die "only one SNAPSHOT, got: $snapshot and $1"; snapshot=$1; shift ;;
  esac
done
[ -n "$snapshot" ] || [ -n "$source_dir" ] || { usage >&2; die "SNAPSHOT or --dir BACKUP_DIR is required"; }

umask 077
scratch=$(mktemp -d "${BACKUP_STAGING:-/var/tmp}/maxcore-restore.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# 0. Fetch the snapshot out of the repository.
if [ -n "$snapshot" ]; then
  restic_env
  log "restic: restoring snapshot $snapshot from $RESTIC_REPOSITORY"
  "$RESTIC" restore --quiet --tag maxcore "$snapshot" --target "$scratch/snapshot" \
    || die "restic could not restore snapshot $snapshot (restic snapshots lists them)"
  sums=$(find "$scratch/snapshot" -name SHA256SUMS -type f | head -n 1)
  [ -n "$sums" ] || die "snapshot $snapshot holds no SHA256SUMS: not a backup.sh snapshot"
  backup=$(dirname "$sums")
else
  [ -d "$source_dir" ] || die "no such backup directory: $source_dir"
  backup=$source_dir
fi

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
log "verified: every checksum of ${snapshot:-$backup} matches"
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
    # shellcheck disable=SC2016 # expanded by the one-off container's shell
    if [ -n "$(in_oneoff "$service" root 'find "$1" -mindepth 1 -maxdepth 1 -print -quit' "$path")" ]; then
      die "$service:$path is not empty; restoring replaces it: re-run with --force"
    fi
  done
fi

# 3. Stop the writers, inbound first: no webhook comes in (Green-API redelivers later),
#    maxcore (and its worker) drains, the EspoCRM daemon and EspoCRM stop writing files and rows.
writers=(nginx "${MAXCORE_SERVICES[@]}" espocrm-daemon espocrm)
listed=$(printf ', %s' "${writers[@]:0:${#writers[@]}-1}")
log "stopping ${listed#, } and ${writers[-1]}"
compose stop "${writers[@]}"
stopped_hint() {
  local status=$?
  if [ $status -ne 0 ]; then
    printf 'ERROR: the restore failed (exit %s) with the writers stopped: fix the cause and run\n' "$status" >&2
    printf '  %s again, or start the stack as it is: %s up -d\n' "$0" "${COMPOSE_CMD[*]}" >&2
  fi
  rm -rf "$scratch"
}
trap stopped_hint EXIT

# Run by the one-off container's shell with the target directory as $1.
# shellcheck disable=SC2016
EMPTY_AND_UNPACK='find "$1" -mindepth 1 -delete && tar -C "$1" -xzf -'

log "restore: mariadb.sql.gz -> database (dropped and recreated)"
if [ "$DRY_RUN" = 1 ]; then
  in_service mariadb sh -c "$MARIADB_RECREATE_AND_LOAD"
else
  gzip -dc "$backup/mariadb.sql.gz" | in_service mariadb sh -c "$MARIADB_RECREATE_AND_LOAD"
fi
log "restore: espocrm-html.tar.gz -> espocrm:$ESPOCRM_HTML_DIR"
in_oneoff espocrm root "$EMPTY_AND_UNPACK" "$ESPOCRM_HTML_DIR" < "$backup/espocrm-html.tar.gz"
log "restore: maxcore-data.tar.gz -> maxcore:$MAXCORE_DATA_PATH"
in_oneoff maxcore 10001:10001 "$EMPTY_AND_UNPACK" "$MAXCORE_DATA_PATH" < "$backup/maxcore-data.tar.gz"

# place FILE TARGET: put a restored host file back, never over a different one.
place() {
  local file=$1 target=$2
  if [ ! -e "$target" ]; then
    run mkdir -p "$(dirname "$target")"
    run cp -p "$file" "$target"
    log "restore: $target (was missing)"
  elif ! cmp -s "$file" "$target"; then
    run cp -p "$file" "$target.restored"
    log "restore: $target differs from the backup: its version is in $target.restored"
  fi
}
mkdir "$scratch/host" "$scratch/config"
tar -C "$scratch/host" -xzf "$backup/host-files.tar.gz"
for name in "${HOST_FILES[@]}"; do
  [ -f "$scratch/host/$name" ] && place "$scratch/host/$name" "$(host_file_path "$name")"
done
tar -C "$scratch/config" -xzf "$backup/maxcore-config.tar.gz"
while IFS= read -r file; do
  place "$scratch/config/$file" "$MAXCORE_CONFIG_DIR/$file"
done < <(cd "$scratch/config" && find . -type f | sed 's|^\./||')

log "starting the stack on the restored data"
compose up -d --no-build --wait
trap - EXIT
rm -rf "$scratch"
log "restore of ${snapshot:-$backup} complete"
