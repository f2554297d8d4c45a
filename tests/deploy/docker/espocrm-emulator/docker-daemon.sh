#!/bin/sh
# The real daemon waits for the install, then runs php daemon.php.
until [ -f /var/www/html/data/config.php ]; do sleep 1; done
exec php /var/www/html/daemon.php
