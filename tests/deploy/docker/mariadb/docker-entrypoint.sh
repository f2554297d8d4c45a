#!/bin/sh
# What the official image does on an empty data directory: create the system tables,
# the root password, MARIADB_DATABASE and MARIADB_USER/_PASSWORD; then run mariadbd
# with the arguments given (docker-compose.yml's command).
set -eu
datadir=/var/lib/mysql
chown mysql:mysql "$datadir" /run/mysqld
if [ ! -d "$datadir/mysql" ]; then
  mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db > /dev/null
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket=/run/mysqld/init.sock &
  pid=$!
  until mariadb-admin --socket=/run/mysqld/init.sock -uroot ping > /dev/null 2>&1; do sleep 0.2; done
  mariadb --socket=/run/mysqld/init.sock -uroot <<SQL
ALTER USER root@localhost IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';
CREATE USER root@'%' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';
GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;
CREATE USER '${MARIADB_USER}'@'%' IDENTIFIED BY '${MARIADB_PASSWORD}';
GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';
SQL
  kill "$pid"
  wait "$pid" || true
fi
exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 "$@"
