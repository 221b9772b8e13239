-- job_insert --
-- Submit a job PENDING. Idempotent on the id: a second submit of the same id changes nothing
-- and returns no row (the caller then reads the existing job).
INSERT INTO jobs (id, name, project_id, pool, submitted_by, priority_class, priority_value,
                  preemption_policy, min_runtime_seconds, required_gpu, required_cpu, image,
                  command, run_seconds, storage_id, config_commit_id, status_reason, status_actor)
VALUES (%(id)s, %(name)s, %(project_id)s, %(pool)s, %(submitted_by)s, %(priority_class)s,
        %(priority_value)s, %(preemption_policy)s, %(min_runtime_seconds)s, %(required_gpu)s,
        %(required_cpu)s, %(image)s, %(command)s, %(run_seconds)s, %(storage_id)s,
        %(config_commit_id)s, %(status_reason)s, %(status_actor)s)
ON CONFLICT (id) DO NOTHING
RETURNING *

-- job_get --
-- One job.
SELECT * FROM jobs WHERE id = %(job_id)s

-- job_get_for_update --
-- One job, locked for this transaction.
SELECT * FROM jobs WHERE id = %(job_id)s FOR UPDATE

-- job_list --
-- Jobs filtered by status, pool and project subtree, newest first.
SELECT j.*, p.path::text AS project_path, u.username AS submitted_by_name
FROM jobs j
JOIN projects p ON p.p_id = j.project_id
JOIN users u ON u.id = j.submitted_by
WHERE (%(statuses)s::qf_job_status[] IS NULL OR j.status = ANY (%(statuses)s::qf_job_status[]))
  AND (%(pool)s::text IS NULL OR j.pool = %(pool)s)
  AND (%(project_id)s::uuid IS NULL
       OR p.path <@ (SELECT path FROM projects WHERE p_id = %(project_id)s))
ORDER BY j.created_at DESC, j.id
LIMIT %(limit)s

-- job_claim_batch --
-- Admit up to `limit` pending jobs of a pool in queue order (sql/migrations/0004_claim.sql).
SELECT job_id, outcome, best_effort
FROM qf_claim_jobs(%(pool)s, %(limit)s, %(sow)s, %(actor)s, %(now)s)

-- job_transition --
-- Move a job to `to_status` if it is in one of `from_statuses`; no row when it is not (the
-- caller reads the job to say why). The trigger checks the state machine and writes the event.
UPDATE jobs
SET status = %(to_status)s, status_reason = %(reason)s, status_actor = %(actor)s
WHERE id = %(job_id)s AND status = ANY (%(from_statuses)s::qf_job_status[])
RETURNING *

-- job_set_pod --
-- Record the pod launched for an admitted job's current attempt.
UPDATE jobs SET pod_name = %(pod_name)s
WHERE id = %(job_id)s AND attempt = %(attempt)s AND status IN ('ADMITTED', 'RUNNING')
RETURNING *

-- job_requeue --
-- An evicted job goes back to the queue (the trigger adds one to attempt and clears the run);
-- created_at is unchanged, so it keeps its place. not_before delays it after repeated
-- preemption.
UPDATE jobs
SET status = 'PENDING', status_reason = %(reason)s, status_actor = %(actor)s,
    not_before = %(not_before)s
WHERE id = %(job_id)s AND status = 'PREEMPTED'
RETURNING *

-- job_note --
-- Record why a job is where it is without changing its status (e.g. a compensated saga).
UPDATE jobs SET status_reason = %(reason)s, status_actor = %(actor)s
WHERE id = %(job_id)s
RETURNING *

-- job_events_list --
-- A job's history, oldest first.
SELECT * FROM job_events WHERE job_id = %(job_id)s ORDER BY at, id

-- job_queue_position --
-- How many admissible jobs of the pool are ahead of a pending job.
SELECT count(*) AS ahead
FROM jobs j, jobs me
WHERE me.id = %(job_id)s AND j.pool = me.pool AND j.status = 'PENDING' AND j.id <> me.id
  AND (j.priority_value > me.priority_value
       OR (j.priority_value = me.priority_value AND (j.created_at, j.id) < (me.created_at, me.id)))

-- job_counts_by_status --
-- How many jobs are in each status, per pool.
SELECT pool, status, count(*) AS n FROM jobs GROUP BY pool, status ORDER BY pool, status

-- job_view --
-- A job as workflows and other services see it: with the project's names from the root and the
-- submitter's username.
SELECT j.*, u.username AS submitted_by_name,
       (SELECT string_agg(a.name, '/' ORDER BY nlevel(a.path))
        FROM projects a WHERE a.path @> p.path) AS project_names
FROM jobs j
JOIN projects p ON p.p_id = j.project_id
JOIN users u ON u.id = j.submitted_by
WHERE j.id = %(job_id)s

-- job_admitted_without_pod --
-- Admitted jobs of a pool that have had no pod for a while: their workflow may never have been
-- told (a dispatcher crash between claim and notification).
SELECT id, attempt FROM jobs
WHERE pool = %(pool)s AND status = 'ADMITTED' AND pod_name IS NULL
  AND admitted_at < now() - make_interval(secs => %(older_than)s)
ORDER BY admitted_at
LIMIT 500

-- job_pending_exists --
-- Whether a pool has anything waiting (an index probe on jobs_claim_order).
SELECT EXISTS (SELECT 1 FROM jobs WHERE pool = %(pool)s AND status = 'PENDING') AS waiting
