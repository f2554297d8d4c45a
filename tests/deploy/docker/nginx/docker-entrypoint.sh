#!/bin/sh
# What the official image's 20-envsubst-on-templates.sh does: every
# /etc/nginx/templates/*.template -> /etc/nginx/conf.d/<name>, substituting only the
# ${VARS} of the environment whose names match NGINX_ENVSUBST_FILTER.
set -eu
filter=${NGINX_ENVSUBST_FILTER:-.*}
defined=$(env | cut -d= -f1 | grep -E "$filter" | sed 's/.*/${&}/' | tr '\n' ' ')
mkdir -p /etc/nginx/conf.d
for template in /etc/nginx/templates/*.template; do
  [ -f "$template" ] || continue
  # shellcheck disable=SC2094 # reads the template, writes conf.d/
  envsubst "$defined" < "$template" > "/etc/nginx/conf.d/$(basename "$template" .template)"
done
exec "$@"
