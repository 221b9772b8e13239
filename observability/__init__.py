"""What a worker process tells Prometheus: quotaflow's own metrics and the Temporal SDK's.

``metrics`` holds the series and the functions activities call; ``collector`` the gauges read
from PostgreSQL at scrape time; ``server`` the HTTP endpoints that worker.py starts when
``QF_METRICS_PORT`` is set. The names are documented in docs/en/operations.md#metrics.
"""
