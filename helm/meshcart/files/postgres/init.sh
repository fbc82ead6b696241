#!/bin/bash
# Runs once, when Postgres initialises an empty data volume (the official
# image runs /docker-entrypoint-initdb.d/*.sh as the postgres user). Creates
# one role and one database per meshcart service; each role owns its
# database and can connect to no other. Passwords come from the postgres
# Secret through the <SERVICE>_DB_PASSWORD variables.
set -euo pipefail

for service in ${MESHCART_DATABASE_SERVICES}; do
  var="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  name="meshcart_${service}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --set=name="$name" --set=password="${!var}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "meshcart: database and role ${name} created"
done

# No service role may connect anywhere but to its own database.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
