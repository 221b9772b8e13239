-- Read-only queries of the metrics (observability/), in the format of sql/queries/*.sql.

-- metrics_queue_depth --
-- Pending jobs per pool and priority class, every pair present (zero included) so a series
-- never vanishes when a queue drains. The count reads only PENDING rows (jobs_status_idx).
WITH pending AS (
    SELECT pool, priority_class, count(*) AS n
    FROM jobs
    WHERE status = 'PENDING'
    GROUP BY pool, priority_class
)
SELECT p.name AS pool, c.name AS priority_class, coalesce(q.n, 0) AS pending
FROM pools p
CROSS JOIN priority_classes c
LEFT JOIN pending q ON q.pool = p.name AND q.priority_class = c.name

-- metrics_pools --
-- Capacity and usage of every pool; usage includes what active preemptions hold.
SELECT name AS pool, gpu_capacity, cpu_capacity, gpu_in_use, cpu_in_use FROM pools

-- metrics_preemptions_active --
-- Sagas under way per pool (preemptions_one_active covers exactly these rows).
SELECT p.name AS pool, count(s.id) AS active
FROM pools p
LEFT JOIN preemptions s ON s.pool = p.name AND s.status = 'ACTIVE'
GROUP BY p.name

-- metrics_admission_waits --
-- How long each just-admitted job waited: from its last entry into PENDING (its submission, or
-- its requeue after a preemption) to its admission. Both instants are clock_timestamp()s the
-- jobs triggers wrote, so the difference is the database's own measure.
SELECT j.id, j.attempt, j.pool, j.priority_class,
       extract(epoch FROM j.admitted_at - e.entered)::float8 AS waited_seconds
FROM jobs j
CROSS JOIN LATERAL (
    SELECT max(ev.at) AS entered
    FROM job_events ev
    WHERE ev.job_id = j.id AND ev.to_status = 'PENDING' AND ev.at <= j.admitted_at
) e
WHERE j.id = ANY (%(job_ids)s::uuid[])
  AND j.admitted_at IS NOT NULL
  AND e.entered IS NOT NULL

-- metrics_saga_latest --
-- A preemptor's most recent saga: how it ended and how long it took.
SELECT id, status, extract(epoch FROM finished_at - created_at)::float8 AS seconds
FROM preemptions
WHERE preemptor_id = %(preemptor_id)s
ORDER BY created_at DESC
LIMIT 1
