#!/usr/bin/env bash
# Deploy (or update) the maxcore stack on this host:
#   preflight → backup (when the stack runs) → pull + build → `maxcore check` inside the
#   NEW image (nothing is switched if the config is refused) → up, wait until every
#   service is healthy → copy the EspoCRM customization in and rebuild as www-data →
#   smoke test (maxcore doctor in the container, /api/health through nginx).
# On failure: a clear message and the exact rollback commands.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SSL_DIR=${SSL_DIR:-$DEPLOY_DIR/nginx/ssl}
CONFIG_DIR=${CONFIG_DIR:-$DEPLOY_DIR/config}
CURL=${CURL:-curl}
MAXCORE_IMAGE=${MAXCORE_IMAGE:-maxcore-app:local}

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--skip-backup] [--skip-pull] [--timeout SECONDS] [--dry-run] [--help]

  --skip-backup      do not run backup.sh before updating a running stack
  --skip-pull        build and start with the images already on this host
  --timeout SECONDS  how long services may take to become healthy (default 300)
  --dry-run          print every command, change nothing
  --help             this text

Needs: $ENV_FILE (from .env.production.example), $SSL_DIR/origin.pem and origin.key
(see nginx/ssl/README.md), $CONFIG_DIR/maxcore.yaml and tenants/.
Stack commands go through \$COMPOSE (now: ${COMPOSE}).
USAGE
}

skip_backup=0
skip_pull=0
timeout=300
while [ $# -gt 0 ]; do
  case $1 in
    --skip-backup) skip_backup=1; shift ;;
    --skip-pull) skip_pull=1; shift ;;
    --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, got: $timeout"

env_value() { grep -E "^$1=" "$ENV_FILE" | tail -n 1 | cut -d= -f2- | tr -d '"'"'"; }

# 1. Preflight: refuse early, before anything changes.
[ -f "$ENV_FILE" ] || die "missing $ENV_FILE: cp $DEPLOY_DIR/.env.production.example $ENV_FILE and fill it in"
if grep -nE '=.*CHANGE_ME' "$ENV_FILE" >&2; then
  die "$ENV_FILE still has CHANGE_ME placeholders (lines above)"
fi
for required in API_HOST CRM_HOST MARIADB_ROOT_PASSWORD MARIADB_PASSWORD; do
  [ -n "$(env_value "$required")" ] || die "$ENV_FILE: $required is empty"
done
if [ ! -s "$SSL_DIR/origin.pem" ] || [ ! -s "$SSL_DIR/origin.key" ]; then
  die "no Origin Certificate in $SSL_DIR (origin.pem + origin.key): see deploy/nginx/ssl/README.md"
fi
if [ ! -f "$CONFIG_DIR/maxcore.yaml" ] || [ ! -d "$CONFIG_DIR/tenants" ]; then
  die "no maxcore configuration in $CONFIG_DIR (maxcore.yaml and tenants/)"
fi
api_host=$(env_value API_HOST)

previous=$(compose images -q maxcore 2>/dev/null | head -n 1 || true)
rollback_hint() {
  {
    echo "Rollback:"
    if [ -n "$previous" ]; then
      echo "  docker tag $previous $MAXCORE_IMAGE && ${COMPOSE_CMD[*]} up -d --no-build maxcore"
    fi
    echo "  or check out the previous release of this repository and run $0 --skip-backup"
    echo "  data: $DEPLOY_DIR/scripts/restore.sh --force <latest backup directory>"
  } >&2
}
fail() { printf 'ERROR: %s\n' "$1" >&2; [ "${2:-}" = rollback ] && rollback_hint; exit 1; }

# 2. Backup first when a stack is already running.
if [ "$skip_backup" != 1 ] && [ -n "$(compose ps --status running -q mariadb 2>/dev/null || true)" ]; then
  log "backup of the running stack"
  "$DEPLOY_DIR/scripts/backup.sh" || fail "backup failed: nothing was changed (use --skip-backup to deploy anyway)"
fi

# 3. Images.
if [ "$skip_pull" != 1 ]; then
  log "pulling the pinned images"
  compose pull --ignore-buildable || fail "docker compose pull failed: nothing was changed"
fi
log "building maxcore and the EspoCRM image with the customization"
compose build --pull maxcore espocrm || fail "build failed: nothing was changed"

# 4. The new image must accept the configuration before anything is switched.
log "maxcore check inside the new image"
compose run --rm --no-deps -T maxcore maxcore check --config /config \
  || fail "the new image refuses the configuration (problems above): nothing was switched"

# 5. Switch and wait for every healthcheck.
log "starting the stack (waiting up to ${timeout}s for healthy services)"
compose up -d --remove-orphans --wait --wait-timeout "$timeout" \
  || fail "services did not become healthy: see '${COMPOSE_CMD[*]} ps' and '... logs <service>'" rollback

# 6. EspoCRM customization: copied in by the image's sync script, then rebuilt as www-data
#    (custom files are not picked up without a rebuild; see espocrm/README.md).
log "applying the EspoCRM customization and rebuilding"
compose exec -T -u root espocrm maxcore-espocrm-sync \
  || fail "copying the EspoCRM customization failed" rollback
compose exec -T -u www-data espocrm php command.php rebuild \
  || fail "EspoCRM rebuild failed: see data/logs in the espocrm volume" rollback

# 7. Smoke test.
log "smoke test: maxcore doctor"
compose exec -T maxcore maxcore doctor --config /config \
  || fail "maxcore doctor found problems (✗ lines above, each with its fix)" rollback
log "smoke test: https://$api_host/api/health through nginx"
# -k: the Origin Certificate is signed by Cloudflare's origin CA, which no OS trusts.
run "$CURL" -fsS -k --max-time 10 --resolve "$api_host:443:127.0.0.1" "https://$api_host/api/health" \
  > /dev/null || fail "https://$api_host/api/health does not answer through nginx" rollback
log "deployed: https://$api_host (API) and https://$(env_value CRM_HOST) (CRM)"
