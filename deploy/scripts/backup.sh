#!/usr/bin/env bash
# Back up the maxcore stack into an encrypted restic repository (and its off-site copy):
# the MariaDB database (consistent dump, --single-transaction), the EspoCRM volume
# (data/, custom/, config; not data/cache), maxcore's data volume (SQLite inbox and
# embedded stores, copied with SQLite's online backup while maxcore runs), deploy/config,
# and the host files a rebuild of this machine needs (.env.production, maxcore.env, the
# Origin Certificate and its key). Every part is checksummed (SHA256SUMS) before it
# enters the repository; old snapshots are forgotten by the retention policy.
# Exits non-zero on any failure; nothing half-written enters the repository.
#
# Why restic: encryption (AES-256, the password never leaves this host), deduplication
# (a daily backup of mostly unchanged volumes costs little), off-site backends (sftp, S3,
# B2, rclone...), `restic copy` between repositories and `restic check`.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--staging DIR] [--dry-run] [--help]

  --staging DIR  where the parts are assembled before restic reads them
                 (default \$BACKUP_STAGING or /var/tmp; removed afterwards)
  --dry-run      print what would run, change nothing
  --help         this text

Repository: RESTIC_REPOSITORY / RESTIC_PASSWORD of $ENV_FILE (created on first use);
off-site copy: RESTIC_OFFSITE_REPOSITORY / RESTIC_OFFSITE_PASSWORD (when set).
Retention: \$RESTIC_FORGET_ARGS (default: $DEFAULT_FORGET_ARGS).
Each snapshot (tag maxcore) holds:
  mariadb.sql.gz         mariadb-dump --single-transaction of \$MARIADB_DATABASE
  espocrm-html.tar.gz    the EspoCRM volume (${ESPOCRM_HTML_DIR}) without data/cache
  maxcore-data.tar.gz    the maxcore data volume (${MAXCORE_DATA_PATH})
  maxcore-config.tar.gz  $MAXCORE_CONFIG_DIR
  host-files.tar.gz      .env.production, maxcore.env, origin.pem, origin.key
  MANIFEST, SHA256SUMS   what and when; checksums verified by restore.sh
Prints the snapshot id on success. List them: restic snapshots (with the same env).
Stack commands go through \$COMPOSE (now: ${COMPOSE}).
USAGE
}

DEFAULT_FORGET_ARGS="--keep-daily 14 --keep-weekly 8 --keep-monthly 12"
staging_root=${BACKUP_STAGING:-/var/tmp}
while [ $# -gt 0 ]; do
  case $1 in
    --staging) staging_root=${2:?--staging needs a directory}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
read -r -a forget_args <<< "${RESTIC_FORGET_ARGS:-$DEFAULT_FORGET_ARGS}"

stamp=$(date -u +%Y%m%dT%H%M%SZ)

# The EspoCRM volume is live: GNU tar exits 1 when a file changed while it was read
# (logs, sessions), which is not a failure of the backup; 2 is. data/cache is rebuilt.
# shellcheck disable=SC2016 # expanded by the container's shell
TAR_LIVE_VOLUME='tar -C "$1" --exclude=./data/cache --warning=no-file-changed --warning=no-file-removed -czf - . ; status=$?; [ "$status" -le 1 ] || exit "$status"'

if [ "$DRY_RUN" = 1 ]; then
  log "dry run: would assemble the backup in $staging_root and store it with restic"
  in_service mariadb sh -c "$MARIADB_DUMP"
  in_service espocrm sh -c "$TAR_LIVE_VOLUME" sh "$ESPOCRM_HTML_DIR"
  in_service maxcore python3 -c "<sqlite-aware tar of the data volume>" "$MAXCORE_DATA_PATH"
  run "$RESTIC" backup --tag maxcore "$staging_root/maxcore-backup"
  run "$RESTIC" forget --tag maxcore --group-by host,tags --prune "${forget_args[@]}"
  exit 0
fi

restic_env
# One fixed staging path: restic then finds the previous snapshot of the same path (and
# reads only changed files); mkdir doubles as the lock against a concurrent run.
work=$staging_root/maxcore-backup
mkdir "$work" 2>/dev/null || die "$work exists: another backup is running (or remove it)"
cleanup() {
  local status=$?
  rm -rf "$work"
  if [ $status -ne 0 ]; then
    printf 'ERROR: backup failed (exit %s); no snapshot was stored\n' "$status" >&2
  fi
}
trap cleanup EXIT
chmod 700 "$work"
umask 077

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

# capture PART COMMAND...: stream a command's output into PART, refusing an empty result.
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

host_files() {
  local staged=$work/.host-files name path
  mkdir "$staged"
  for name in "${HOST_FILES[@]}"; do
    path=$(host_file_path "$name")
    if [ -f "$path" ]; then
      cp -p "$path" "$staged/$name"
    else
      log "backup: $path does not exist (not in host-files.tar.gz)"
    fi
  done
  tar -C "$staged" -czf - .
  rm -rf "$staged"
}

capture mariadb.sql.gz dump_database
# A dump that stopped half-way has no completion trailer.
gzip -dc "$work/mariadb.sql.gz" | tail -n 1 | grep -q '^-- Dump completed' \
  || die "mariadb.sql.gz is truncated (no '-- Dump completed' line)"
capture espocrm-html.tar.gz in_service espocrm sh -c "$TAR_LIVE_VOLUME" sh "$ESPOCRM_HTML_DIR"
capture maxcore-data.tar.gz in_service maxcore python3 -c "$SQLITE_SNAPSHOT_PY" "$MAXCORE_DATA_PATH"
capture maxcore-config.tar.gz tar -C "$MAXCORE_CONFIG_DIR" -czf - .
capture host-files.tar.gz host_files

{
  echo "created: $stamp"
  echo "host: $(hostname)"
  for part in "${BACKUP_PARTS[@]}"; do
    echo "part: $part $(wc -c < "$work/$part") bytes"
  done
} > "$work/MANIFEST"
(cd "$work" && sha256sum "${BACKUP_PARTS[@]}" MANIFEST > SHA256SUMS)

# The repository is created on first use; a wrong password fails here, loudly.
if ! "$RESTIC" cat config > /dev/null 2>&1; then
  log "restic: initialising $RESTIC_REPOSITORY"
  "$RESTIC" init > /dev/null
fi
log "restic: storing the snapshot in $RESTIC_REPOSITORY"
snapshot=$("$RESTIC" backup --quiet --json --tag maxcore --host maxcore "$work" | grep -o '"snapshot_id":"[0-9a-f]*"' \
  | cut -d'"' -f4)
[ -n "$snapshot" ] || die "restic stored no snapshot"
"$RESTIC" forget --quiet --tag maxcore --group-by host,tags --prune "${forget_args[@]}" > /dev/null

if [ -n "$RESTIC_OFFSITE_REPOSITORY" ]; then
  [ -n "$RESTIC_OFFSITE_PASSWORD" ] || die "RESTIC_OFFSITE_PASSWORD is empty in $ENV_FILE"
  log "restic: copying $snapshot off-site to $RESTIC_OFFSITE_REPOSITORY"
  (
    export RESTIC_FROM_REPOSITORY=$RESTIC_REPOSITORY RESTIC_FROM_PASSWORD=$RESTIC_PASSWORD
    export RESTIC_REPOSITORY=$RESTIC_OFFSITE_REPOSITORY RESTIC_PASSWORD=$RESTIC_OFFSITE_PASSWORD
    if ! "$RESTIC" cat config > /dev/null 2>&1; then
      "$RESTIC" init --copy-chunker-params > /dev/null
    fi
    "$RESTIC" copy --quiet "$snapshot" > /dev/null
    "$RESTIC" forget --quiet --tag maxcore --group-by host,tags --prune "${forget_args[@]}" > /dev/null
  ) || die "the off-site copy failed (the local snapshot $snapshot is stored)"
fi
log "backup stored: snapshot $snapshot"
echo "$snapshot"
