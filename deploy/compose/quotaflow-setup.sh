#!/bin/sh
# One-shot in the quotaflow image: what quotaflow needs from a fresh Temporal and PostgreSQL.
# Every step is idempotent, so it runs on every `docker compose up` before the worker starts.
set -eu
: "${QF_TEMPORAL_ADDRESS:?}" "${QF_DATABASE_URL:?}"
namespace="${QF_TEMPORAL_NAMESPACE:-default}"
address="$QF_TEMPORAL_ADDRESS"

# The frontend accepts connections a little before it serves (the healthcheck only sees the port).
tries=0
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "Temporal at $address did not become healthy" >&2
        exit 1
    fi
    sleep 2
done

temporal operator namespace describe --namespace "$namespace" --address "$address" >/dev/null 2>&1 ||
    temporal operator namespace create --namespace "$namespace" --address "$address"

# One list, in workflows/shared.py; creating an attribute that exists with the same type is a
# no-op, with another type an error.
attributes=$(python -c 'from workflows.shared import SEARCH_ATTRIBUTES as s
print(" ".join(f"{name}={kind}" for name, kind in s.items()))')
for attribute in $attributes; do
    temporal operator search-attribute create --namespace "$namespace" --address "$address" \
        --name "${attribute%%=*}" --type "${attribute#*=}"
done

python starter.py db migrate
