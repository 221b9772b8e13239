#!/bin/sh
# One-shot in temporalio/admin-tools: Temporal's schemas in the two databases the postgres
# service created on its first boot. Safe on every `docker compose up`: setup-schema only adds
# the version tables, update-schema applies the versions that are missing.
set -eu

# The password comes from SQL_PASSWORD in the environment, never from the command line.
schema() {
    database=$1
    versions=$2
    temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db "$database" \
        setup-schema -v 0.0
    temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u temporal --db "$database" \
        update-schema -d "/etc/temporal/schema/postgresql/v12/$versions/versioned"
}

schema temporal temporal
schema temporal_visibility visibility
echo "Temporal schemas are up to date"
