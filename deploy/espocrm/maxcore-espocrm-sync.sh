#!/bin/sh
# Copy the customization shipped in the image into the EspoCRM volume, owned by
# www-data. Run as root inside the espocrm container, then rebuild as www-data:
#   docker compose exec -u root espocrm maxcore-espocrm-sync
#   docker compose exec -u www-data espocrm php command.php rebuild
set -eu
src=${MAXCORE_ESPOCRM_CUSTOM:-/opt/maxcore-espocrm/custom/Espo/Custom}
html=${ESPOCRM_HTML_DIR:-/var/www/html}
dst=$html/custom/Espo/Custom
if [ ! -f "$html/data/config.php" ]; then
  echo "EspoCRM is not installed in $html yet: wait for the espocrm service to be healthy" >&2
  exit 1
fi
if [ ! -d "$src" ]; then
  echo "no customization in $src: was the image built from deploy/espocrm/Dockerfile?" >&2
  exit 1
fi
mkdir -p "$dst"
# Files removed from the customization are not deleted here (an admin may have added
# files through the UI); delete them by hand, then rebuild with --hard.
cp -R "$src/." "$dst/"
chown -R www-data:www-data "$html/custom"
echo "customization copied into $dst; now: php command.php rebuild (as www-data)"
