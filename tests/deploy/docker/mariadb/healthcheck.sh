#!/bin/sh
# The official image's `healthcheck.sh --connect --innodb_initialized`: the server
# answers on its socket with the root account (InnoDB is up once it answers here).
MYSQL_PWD=$MARIADB_ROOT_PASSWORD exec mariadb -uroot -e "SELECT 1 FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB' AND SUPPORT IN ('YES', 'DEFAULT')" > /dev/null
