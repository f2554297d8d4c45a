#!/bin/sh
# Install the customization shipped in the image into the EspoCRM volume, owned by
# www-data, and remove the files a previous version installed that this one no longer
# ships. Run as root inside the espocrm container, then rebuild as www-data:
#   docker compose exec -u root espocrm maxcore-espocrm-sync
#   docker compose exec -u www-data espocrm php command.php rebuild
# The manifest (data/maxcore-custom.manifest) lists what the last sync installed: only
# those files are ever deleted, so files an admin created through the UI stay.
set -eu
src=${MAXCORE_ESPOCRM_CUSTOM:-/opt/maxcore-espocrm/custom/Espo/Custom}
html=${ESPOCRM_HTML_DIR:-/var/www/html}
dst=$html/custom/Espo/Custom
manifest=$html/data/maxcore-custom.manifest
if [ ! -f "$html/data/config.php" ]; then
  echo "EspoCRM is not installed in $html yet: wait for the espocrm service to be healthy" >&2
  exit 1
fi
if [ ! -d "$src" ]; then
  echo "no customization in $src: was the image built from deploy/espocrm/Dockerfile?" >&2
  exit 1
fi
mkdir -p "$dst"
new_manifest=$(mktemp)
trap 'rm -f "$new_manifest"' EXIT
(cd "$src" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) > "$new_manifest"

removed=0
if [ -f "$manifest" ]; then
  # Files of the previous version that this one does not ship.
  LC_ALL=C sort "$manifest" | LC_ALL=C comm -23 - "$new_manifest" | while IFS= read -r path; do
    case $path in
      ''|/*|*..*) continue ;;  # never leave the customization folder
    esac
    if [ -f "$dst/$path" ]; then
      rm -f "$dst/$path"
      echo "removed $path (no longer shipped)"
    fi
  done
  removed=1
fi
# Empty folders left by removed files.
[ "$removed" = 0 ] || find "$dst" -mindepth 1 -type d -empty -delete

cp -R "$src/." "$dst/"
cp "$new_manifest" "$manifest"
chown -R www-data:www-data "$html/custom" "$manifest"
echo "customization installed in $dst ($(wc -l < "$new_manifest") files); now: php command.php rebuild (as www-data)"
