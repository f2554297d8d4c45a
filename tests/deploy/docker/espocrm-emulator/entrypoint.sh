#!/bin/sh
# Like the real entrypoint on an empty volume: "install" (data/config.php) and copy the
# image's custom/ in; then serve the EspoCRM API on port 80.
set -eu
html=/var/www/html
if [ ! -f "$html/data/config.php" ]; then
  mkdir -p "$html/data" "$html/custom"
  cp -R /usr/src/espocrm/custom/. "$html/custom/"
  printf "<?php return ['siteUrl' => '%s'];\n" "${ESPOCRM_SITE_URL:-}" > "$html/data/config.php"
  chown -R www-data:www-data "$html"
fi
exec python -m maxcore.testing.espocrm --port 80 --custom-dir "$html/custom" \
  --state-dir "$html/data/emulator"
