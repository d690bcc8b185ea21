#!/bin/sh
# The service's login role, created when the database volume is first initialised. It
# owns nothing: the migrations (run as the owner) grant it what the service needs.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$KMM_APP_PASSWORD" <<'SQL'
CREATE ROLE kmm_app LOGIN PASSWORD :'app_password';
SQL
