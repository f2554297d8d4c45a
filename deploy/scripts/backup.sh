#!/usr/bin/env bash
# Back up the maxcore stack: the MariaDB database (consistent dump, --single-transaction),
# the EspoCRM volume (/var/www/html: data/, custom/, config), maxcore's data volume
# (SQLite inbox and embedded stores) and its configuration. One timestamped directory
# per run, every file checksummed (SHA256SUMS), old backups rotated by count and age.
# Exits non-zero on any failure and leaves no half-written backup behind.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--dest DIR] [--keep N] [--max-age DAYS] [--dry-run] [--help]

  --dest DIR      where backups go (default \$BACKUP_DIR or /var/backups/maxcore)
  --keep N        keep the N newest backups (default \$BACKUP_KEEP or 14; 0 = no limit)
  --max-age DAYS  also delete backups older than DAYS (default \$BACKUP_MAX_AGE_DAYS or 30; 0 = never)
  --dry-run       print what would run, change nothing
  --help          this text

Each run creates DIR/maxcore-YYYYmmddTHHMMSSZ/ with:
  mariadb.sql.gz         mariadb-dump --single-transaction of \$MARIADB_DATABASE
  espocrm-html.tar.gz    the EspoCRM volume (${ESPOCRM_HTML_DIR})
  maxcore-data.tar.gz    the maxcore data volume (${MAXCORE_DATA_PATH}); its live SQLite
                         databases (inbox, embedded stores) copied with SQLite's online
                         backup, so they are consistent while maxcore runs
  maxcore-config.tar.gz  the maxcore configuration (${MAXCORE_CONFIG_PATH})
  MANIFEST, SHA256SUMS   what and when; checksums verified by restore.sh

Stack commands go through \$COMPOSE (now: ${COMPOSE}).
USAGE
}

dest=${BACKUP_DIR:-/var/backups/maxcore}
keep=${BACKUP_KEEP:-14}
max_age=${BACKUP_MAX_AGE_DAYS:-30}
while [ $# -gt 0 ]; do
  case $1 in
    --dest) dest=${2:?--dest needs a directory}; shift 2 ;;
    --keep) keep=${2:?--keep needs a number}; shift 2 ;;
    --max-age) max_age=${2:?--max-age needs a number of days}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $keep =~ ^[0-9]+$ ]] || die "--keep must be a whole number, got: $keep"
[[ $max_age =~ ^[0-9]+$ ]] || die "--max-age must be a whole number of days, got: $max_age"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
final=$dest/maxcore-$stamp
work=$dest/.maxcore-$stamp.partial

if [ "$DRY_RUN" = 1 ]; then
  log "dry run: would write $final"
  in_service mariadb sh -c "$MARIADB_DUMP"
  in_service espocrm tar -C "$ESPOCRM_HTML_DIR" -czf - .
  in_service maxcore python3 -c "<sqlite-aware tar of the data volume>" "$MAXCORE_DATA_PATH"
  in_service maxcore tar -C "$MAXCORE_CONFIG_PATH" -czf - .
  log "dry run: would keep the $keep newest backups and delete those older than $max_age days"
  exit 0
fi

cleanup() {
  local status=$?
  if [ $status -ne 0 ]; then
    rm -rf "$work"
    printf 'ERROR: backup failed (exit %s); nothing was kept in %s\n' "$status" "$dest" >&2
  fi
}
trap cleanup EXIT

umask 077
mkdir -p "$dest"
mkdir "$work"

# capture PART COMMAND...: stream a service's output into PART, refusing an empty result.
# The maxcore data volume holds live SQLite databases in WAL mode (the inbox, the embedded
# stores): a plain tar can catch a file mid-write and leaves the recent pages in the -wal
# file. This writes the volume as tar.gz on stdout with each database copied through
# SQLite's online backup API (consistent, WAL folded in) and -wal/-shm files left out.
SQLITE_SNAPSHOT_PY='
import os, sqlite3, sys, tarfile, io, time
root = sys.argv[1]
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|gz") as tar:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if folder != root:
            tar.add(folder, arcname=os.path.relpath(folder, root), recursive=False)
        for name in sorted(files):
            path = os.path.join(folder, name)
            arcname = os.path.relpath(path, root)
            if name.endswith(("-wal", "-shm", "-journal")):
                continue
            with open(path, "rb") as handle:
                is_db = handle.read(16) == b"SQLite format 3\x00"
            if not is_db:
                tar.add(path, arcname=arcname, recursive=False)
                continue
            source = sqlite3.connect(path, timeout=30)
            copy = sqlite3.connect(":memory:")
            source.backup(copy)
            source.close()
            data = copy.serialize()
            copy.close()
            info = tar.gettarinfo(path, arcname=arcname)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
'

capture() {
  local part=$1
  shift
  log "backup: $part"
  "$@" > "$work/$part"
  [ -s "$work/$part" ] || die "$part is empty: the command produced nothing"
  gzip -t "$work/$part" 2>/dev/null || die "$part is not a valid gzip stream"
}

dump_database() {
  # pipefail makes a failing dump fail the pipeline even though gzip succeeds.
  in_service mariadb sh -c "$MARIADB_DUMP" | gzip -6
}

capture mariadb.sql.gz dump_database
# A dump that stopped half-way has no completion trailer.
gzip -dc "$work/mariadb.sql.gz" | tail -n 1 | grep -q '^-- Dump completed' \
  || die "mariadb.sql.gz is truncated (no '-- Dump completed' line)"
capture espocrm-html.tar.gz in_service espocrm tar -C "$ESPOCRM_HTML_DIR" -czf - .
capture maxcore-data.tar.gz in_service maxcore python3 -c "$SQLITE_SNAPSHOT_PY" "$MAXCORE_DATA_PATH"
capture maxcore-config.tar.gz in_service maxcore tar -C "$MAXCORE_CONFIG_PATH" -czf - .

{
  echo "created: $stamp"
  echo "host: $(hostname)"
  for part in "${BACKUP_PARTS[@]}"; do
    echo "part: $part $(wc -c < "$work/$part") bytes"
  done
} > "$work/MANIFEST"
(cd "$work" && sha256sum "${BACKUP_PARTS[@]}" MANIFEST > SHA256SUMS)
mv "$work" "$final"
log "backup written: $final"

# Rotation: never touches the backup just written.
mapfile -t backups < <(find "$dest" -mindepth 1 -maxdepth 1 -type d -name 'maxcore-*' | sort -r)
if [ "$keep" -gt 0 ] && [ "${#backups[@]}" -gt "$keep" ]; then
  for old in "${backups[@]:$keep}"; do
    log "rotation: removing $old (more than $keep backups)"
    rm -rf "$old"
  done
fi
if [ "$max_age" -gt 0 ]; then
  while IFS= read -r old; do
    [ "$old" = "$final" ] && continue
    log "rotation: removing $old (older than $max_age days)"
    rm -rf "$old"
  done < <(find "$dest" -mindepth 1 -maxdepth 1 -type d -name 'maxcore-*' -mtime "+$max_age")
fi
echo "$final"
