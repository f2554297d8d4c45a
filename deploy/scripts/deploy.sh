#!/usr/bin/env bash
# Deploy (or update) the maxcore stack on this host. The same command does the first
# deploy and every update:
#   1 preflight → 2 backup (when the stack runs) → 3 pull + build → 4 Supabase
#   migrations → 5 MariaDB + EspoCRM up and healthy → 6 EspoCRM customization synced
#   and rebuilt → 7 maxcore's EspoCRM API user (first deploy: created through EspoCRM's
#   API with the admin account, its key written to .env.production) → 8 `maxcore check`
#   inside the NEW image (nothing of maxcore is switched if it refuses the config) →
#   9 everything up and healthy → 10 smoke test (maxcore doctor, /api/health through nginx).
# On failure: a clear message and the exact rollback command.
#   deploy.sh --rollback   puts back the maxcore image that ran before the last deploy.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=espocrm_api.sh
source "$(dirname "${BASH_SOURCE[0]}")/espocrm_api.sh"

CURL=${CURL:-curl}
PSQL=${PSQL:-psql}
DOCKER=${DOCKER:-docker}
MAXCORE_IMAGE=${MAXCORE_IMAGE:-maxcore-app:local}
PREVIOUS_IMAGE=${PREVIOUS_IMAGE:-maxcore-app:previous}
MIGRATIONS_DIR=${MIGRATIONS_DIR:-$DEPLOY_DIR/supabase/migrations}

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--skip-backup] [--skip-pull] [--timeout SECONDS] [--dry-run] [--help]
       $(basename "$0") --rollback

  --skip-backup      do not run backup.sh before updating a running stack
  --skip-pull        build and start with the base images already on this host
  --timeout SECONDS  how long services may take to become healthy (default 300)
  --rollback         run the maxcore image of before the last deploy again ($PREVIOUS_IMAGE)
  --dry-run          print every command, change nothing
  --help             this text

Needs: $ENV_FILE (from .env.production.example), $MAXCORE_ENV_FILE
(from maxcore.env.example), $SSL_DIR/origin.pem and origin.key (see nginx/ssl/README.md),
$MAXCORE_CONFIG_DIR/maxcore.yaml and tenants/. With SUPABASE_DB_URL set, psql.
Stack commands go through \$COMPOSE (now: ${COMPOSE}).
USAGE
}

skip_backup=0
skip_pull=0
rollback=0
timeout=300
while [ $# -gt 0 ]; do
  case $1 in
    --skip-backup) skip_backup=1; shift ;;
    --skip-pull) skip_pull=1; shift ;;
    --rollback) rollback=1; shift ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, got: $timeout"

rollback_hint() {
  {
    echo "Rollback:"
    echo "  $0 --rollback        (the maxcore image that ran before this deploy)"
    echo "  or check out the previous release of this repository and run $0 --skip-backup"
    echo "  data: $DEPLOY_DIR/scripts/restore.sh --force latest"
  } >&2
}
fail() { printf 'ERROR: %s\n' "$1" >&2; [ "${2:-}" = rollback ] && rollback_hint; exit 1; }

# smoke_test: maxcore doctor inside the container, then /api/health through nginx's
# published HTTPS port (-k: the Origin Certificate is signed by Cloudflare's origin CA,
# which no OS trusts).
smoke_test() {
  local api_host published port
  api_host=$(env_value API_HOST)
  log "smoke test: maxcore doctor"
  compose exec -T maxcore maxcore doctor --config /config \
    || fail "maxcore doctor found problems (✗ lines above, each with its fix)" rollback
  published=$(compose port nginx 443 2>/dev/null | tail -n 1 || true)
  port=${published##*:}
  [ -n "$port" ] || port=443
  log "smoke test: https://$api_host/api/health through nginx (port $port)"
  run "$CURL" -fsS -k --max-time 10 --retry 5 --retry-delay 2 --retry-all-errors \
    --resolve "$api_host:$port:127.0.0.1" "https://$api_host:$port/api/health" > /dev/null \
    || fail "https://$api_host/api/health does not answer through nginx" rollback
}

# 1. Preflight: refuse early, before anything changes.
[ -f "$ENV_FILE" ] || die "missing $ENV_FILE: cp $DEPLOY_DIR/.env.production.example $ENV_FILE and fill it in"
[ -f "$MAXCORE_ENV_FILE" ] || die "missing $MAXCORE_ENV_FILE: cp $DEPLOY_DIR/maxcore.env.example $MAXCORE_ENV_FILE and fill it in"
for file in "$ENV_FILE" "$MAXCORE_ENV_FILE"; do
  if grep -nE '^[A-Za-z_]+=.*CHANGE_ME' "$file" >&2; then
    die "$file still has CHANGE_ME placeholders (lines above)"
  fi
done
for required in API_HOST CRM_HOST MARIADB_ROOT_PASSWORD MARIADB_DATABASE MARIADB_USER \
    MARIADB_PASSWORD ESPOCRM_ADMIN_USERNAME ESPOCRM_ADMIN_PASSWORD; do
  [ -n "$(env_value "$required")" ] || die "$ENV_FILE: $required is empty"
done
if [ ! -s "$SSL_DIR/origin.pem" ] || [ ! -s "$SSL_DIR/origin.key" ]; then
  die "no Origin Certificate in $SSL_DIR (origin.pem + origin.key): see deploy/nginx/ssl/README.md"
fi
if [ ! -f "$MAXCORE_CONFIG_DIR/maxcore.yaml" ] || [ ! -d "$MAXCORE_CONFIG_DIR/tenants" ]; then
  die "no maxcore configuration in $MAXCORE_CONFIG_DIR (maxcore.yaml and tenants/)"
fi
supabase_db_url=$(env_value SUPABASE_DB_URL)
if [ -n "$supabase_db_url" ] && [ "$DRY_RUN" != 1 ] && ! command -v "$PSQL" > /dev/null; then
  die "SUPABASE_DB_URL is set but psql is missing: apt-get install postgresql-client"
fi

if [ "$rollback" = 1 ]; then
  run "$DOCKER" image inspect "$PREVIOUS_IMAGE" > /dev/null 2>&1 \
    || die "no $PREVIOUS_IMAGE image on this host: nothing to roll back to"
  log "rollback: $MAXCORE_IMAGE <- $PREVIOUS_IMAGE, ${MAXCORE_SERVICES[*]} recreated"
  run "$DOCKER" tag "$PREVIOUS_IMAGE" "$MAXCORE_IMAGE"
  compose up -d --no-build --no-deps --wait --wait-timeout "$timeout" "${MAXCORE_SERVICES[@]}" \
    || fail "the previous maxcore image did not become healthy: see '${COMPOSE_CMD[*]} logs ${MAXCORE_SERVICES[*]}'"
  smoke_test
  log "rolled back to $PREVIOUS_IMAGE"
  exit 0
fi

# The image maxcore runs now becomes the rollback target once the new one is built.
running_image=$(compose images -q maxcore 2>/dev/null | head -n 1 || true)

# 2. Backup first when a stack is already running.
if [ "$skip_backup" != 1 ] && [ -n "$(compose ps --status running -q mariadb 2>/dev/null || true)" ]; then
  log "backup of the running stack"
  "$DEPLOY_DIR/scripts/backup.sh" || fail "backup failed: nothing was changed (use --skip-backup to deploy anyway)"
fi

# 3. Images. The locally built ones (pull_policy: build) are never pulled.
build_flags=(--pull)
if [ "$skip_pull" != 1 ]; then
  log "pulling the pinned images"
  compose pull --ignore-buildable || fail "docker compose pull failed: nothing was changed"
else
  build_flags=()
fi
log "building maxcore and the EspoCRM image with the customization"
compose build "${build_flags[@]}" maxcore espocrm espocrm-daemon || fail "build failed: nothing was changed"
if [ -n "$running_image" ]; then
  run "$DOCKER" tag "$running_image" "$PREVIOUS_IMAGE"
fi

# 4. Supabase schema (idempotent migrations, in name order).
if [ -n "$supabase_db_url" ]; then
  for migration in "$MIGRATIONS_DIR"/*.sql; do
    log "Supabase migration: $(basename "$migration")"
    run "$PSQL" "$supabase_db_url" -v ON_ERROR_STOP=1 -q -X -f "$migration" \
      || fail "Supabase migration $(basename "$migration") failed: maxcore was not switched"
  done
else
  log "Supabase migrations skipped: SUPABASE_DB_URL is empty in $ENV_FILE (no tenant on Supabase)"
fi

# 5. The CRM side first: maxcore needs EspoCRM installed and its API user.
log "starting MariaDB and EspoCRM (waiting up to ${timeout}s for healthy services)"
compose up -d --no-build --wait --wait-timeout "$timeout" mariadb espocrm espocrm-daemon \
  || fail "MariaDB/EspoCRM did not become healthy: see '${COMPOSE_CMD[*]} logs espocrm mariadb'" rollback

# 6. EspoCRM customization: synced by the image's script (its manifest removes what a
#    previous version added and this one dropped), then rebuilt as www-data (custom files
#    are not picked up without a rebuild; see espocrm/README.md).
log "applying the EspoCRM customization and rebuilding"
compose exec -T -u root espocrm maxcore-espocrm-sync \
  || fail "copying the EspoCRM customization failed" rollback
compose exec -T -u www-data espocrm php command.php rebuild \
  || fail "EspoCRM rebuild failed: see data/logs in the espocrm volume" rollback

# 7. maxcore's API user: created once, through EspoCRM's own API.
if [ -z "$(env_value ESPOCRM_API_KEY)" ]; then
  log "first deploy: creating maxcore's EspoCRM API user with the admin account"
  if [ "$DRY_RUN" = 1 ]; then
    printf 'would create the Role %s and the API user %s, and write ESPOCRM_API_KEY to %s\n' \
      "$ESPOCRM_ROLE_NAME" "$ESPOCRM_API_USER_NAME" "$ENV_FILE" >&2
  else
    api_key=$(espocrm_ensure_api_user) || fail "creating the EspoCRM API user failed (message above)"
    set_env_value ESPOCRM_API_KEY "$api_key"
    log "ESPOCRM_API_KEY written to $ENV_FILE"
  fi
fi

# 8. The new image must accept the configuration before maxcore is switched.
log "maxcore check inside the new image"
compose run --rm --no-deps -T maxcore maxcore check --config /config \
  || fail "the new image refuses the configuration (problems above): maxcore was not switched"

# 9. Switch maxcore (recreated when its image or settings changed) and start nginx.
log "starting the stack (waiting up to ${timeout}s for healthy services)"
compose up -d --no-build --remove-orphans --wait --wait-timeout "$timeout" \
  || fail "services did not become healthy: see '${COMPOSE_CMD[*]} ps' and '... logs <service>'" rollback

# 10. Smoke test.
smoke_test
log "deployed: https://$(env_value API_HOST) (API) and https://$(env_value CRM_HOST) (CRM)"
