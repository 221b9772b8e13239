#!/bin/sh
# First boot of the postgres service only (docker-entrypoint-initdb.d runs it on an empty data
# volume): one role and database per user of this server. Each role owns its databases, so it
# can create the trusted extensions it needs itself (quotaflow: ltree and btree_gist from
# contrib; Temporal's visibility schema: btree_gin). No `set -e` here: the image's entrypoint
# sources scripts that are not executable, and ON_ERROR_STOP already fails the whole step.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v temporal_password="$TEMPORAL_DB_PASSWORD" \
    -v quotaflow_password="$QUOTAFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE ROLE quotaflow LOGIN PASSWORD :'quotaflow_password';
CREATE DATABASE quotaflow OWNER quotaflow;
SQL
