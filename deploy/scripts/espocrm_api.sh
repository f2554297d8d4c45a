# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Create maxcore's EspoCRM API user through EspoCRM's own REST API (what an admin does in
# Administration › Roles and › API Users), sourced by deploy.sh after lib.sh.
#
# The calls run inside the espocrm container (`curl http://localhost/api/v1/...`), with
# the admin credentials of that container's environment (ESPOCRM_ADMIN_USERNAME and
# _PASSWORD, which the EspoCRM install reads too): they never appear on a command line
# (curl reads them from its stdin config) and EspoCRM need not be published.
# EspoCRM 8.3: an admin's POST User {type: api, authMethod: ApiKey} generates the apiKey
# server-side and returns it (Classes/RecordHooks/User/BeforeCreate.php, OutputFilter).

ESPOCRM_ROLE_NAME=${ESPOCRM_ROLE_NAME:-maxcore}
ESPOCRM_API_USER_NAME=${ESPOCRM_API_USER_NAME:-maxcore-api}

# What the connectors need: leads and the custom entities (no delete), webhooks.
ESPOCRM_ROLE_BODY='{"name":"%s","assignmentPermission":"all","userPermission":"no","data":{"Lead":{"create":"yes","read":"all","edit":"all","delete":"no"},"DiagnosticIA":{"create":"yes","read":"all","edit":"all","delete":"no"},"MissionMAX":{"create":"yes","read":"all","edit":"all","delete":"no"},"Webhook":true},"fieldData":{}}'
ESPOCRM_USER_BODY='{"userName":"%s","type":"api","authMethod":"ApiKey","isActive":true,"rolesIds":["%s"]}'

# Run by the container's shell: $1 method, $2 path under /api/v1 (with its query), $3
# the JSON body (may be empty). Prints the response body, then the status on a last line.
# shellcheck disable=SC2016 # expanded by the container's shell, not this one
ESPOCRM_ADMIN_CALL='
set -eu
quote() { printf "%s" "$1" | sed "s/[\\\\\"]/\\\\&/g"; }
{
  printf "user = \"%s:%s\"\n" "$(quote "$ESPOCRM_ADMIN_USERNAME")" "$(quote "$ESPOCRM_ADMIN_PASSWORD")"
  if [ -n "$3" ]; then printf "data = \"%s\"\n" "$(quote "$3")"; fi
} | curl -sS --max-time 30 -K - -X "$1" -H "Content-Type: application/json" \
    -w "\n%{http_code}" "${ESPOCRM_LOCAL_URL:-http://localhost}/api/v1/$2"
'

# espocrm_admin METHOD PATH [BODY]: sets ESPO_STATUS and ESPO_BODY.
espocrm_admin() {
  local out
  out=$(in_service espocrm sh -c "$ESPOCRM_ADMIN_CALL" sh "$1" "$2" "${3:-}") || {
    ESPO_STATUS=000
    ESPO_BODY=$out
    return 0
  }
  ESPO_STATUS=${out##*$'\n'}
  ESPO_BODY=${out%$'\n'*}
  [ "$ESPO_BODY" != "$out" ] || ESPO_BODY=
}

# json_string FIELD: the first "FIELD":"value" of the JSON on stdin (EspoCRM's values
# here are ids and hex keys: no escaped quotes to worry about).
json_string() {
  grep -o "\"$1\" *: *\"[^\"]*\"" | head -n 1 | sed -e 's/^[^:]*: *"//' -e 's/"$//'
}

# espocrm_find ENTITY FIELD VALUE: the id of the first record with FIELD = VALUE.
espocrm_find() {
  espocrm_admin GET "$1?select=id&maxSize=1&where%5B0%5D%5Btype%5D=equals&where%5B0%5D%5Battribute%5D=$2&where%5B0%5D%5Bvalue%5D=$3"
  [ "$ESPO_STATUS" = 200 ] || {
    echo "EspoCRM: listing $1 as admin answered HTTP $ESPO_STATUS (is ESPOCRM_ADMIN_PASSWORD the one EspoCRM was installed with?)" >&2
    return 1
  }
  printf '%s' "$ESPO_BODY" | json_string id || true
}

# espocrm_ensure_api_user: print the API key of maxcore's API user, creating its Role
# and the user when missing (a re-run after a failed deploy reuses them).
espocrm_ensure_api_user() {
  local role_id user_id key
  role_id=$(espocrm_find Role name "$ESPOCRM_ROLE_NAME") || return 1
  if [ -z "$role_id" ]; then
    # shellcheck disable=SC2059 # the body templates are formats on purpose
    espocrm_admin POST Role "$(printf "$ESPOCRM_ROLE_BODY" "$ESPOCRM_ROLE_NAME")"
    [ "$ESPO_STATUS" = 200 ] || { echo "EspoCRM: creating the Role answered HTTP $ESPO_STATUS" >&2; return 1; }
    role_id=$(printf '%s' "$ESPO_BODY" | json_string id)
  fi
  user_id=$(espocrm_find User userName "$ESPOCRM_API_USER_NAME") || return 1
  if [ -z "$user_id" ]; then
    # shellcheck disable=SC2059
    espocrm_admin POST User "$(printf "$ESPOCRM_USER_BODY" "$ESPOCRM_API_USER_NAME" "$role_id")"
    [ "$ESPO_STATUS" = 200 ] || { echo "EspoCRM: creating the API user answered HTTP $ESPO_STATUS" >&2; return 1; }
  else
    espocrm_admin GET "User/$user_id"
    [ "$ESPO_STATUS" = 200 ] || { echo "EspoCRM: reading the API user answered HTTP $ESPO_STATUS" >&2; return 1; }
  fi
  key=$(printf '%s' "$ESPO_BODY" | json_string apiKey)
  [[ $key =~ ^[A-Za-z0-9]+$ ]] || { echo "EspoCRM returned no apiKey for $ESPOCRM_API_USER_NAME" >&2; return 1; }
  printf '%s\n' "$key"
}
