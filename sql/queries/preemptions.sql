-- victim_rank --
-- DESIGN §5 in one statement: rank the candidates, keep the shortest prefix whose cumulative
-- GPUs and CPUs (SUM() OVER the victim order) free `need`, then walk that prefix backwards and
-- spare every victim whose removal still frees `need` (a greedy prefix alone over-evicts:
-- volcano-sh/volcano#5994). Every ranked candidate comes back with its decision, which is also
-- the `explain` answer. Nobody is taken when all candidates together cannot free `need`.
WITH RECURSIVE
params AS (
    SELECT %(need_gpu)s::int AS need_gpu, %(need_cpu)s::int AS need_cpu
),
-- Who may be evicted: admitted or running jobs of the pool that are best effort or of strictly
-- lower priority, and have run at least their class's minimum (anti-thrashing). Read in victim
-- order straight off jobs_victim_order; only a prefix of `lim` rows — the caller repeats with a
-- larger one when it cannot free enough, so the answer never depends on the limit. Rows another
-- transaction holds (a pod being launched, a job ending) are skipped, not waited for.
candidates AS (
    -- parameters inline, not from `params`: the planner must see the pool to walk the index
    SELECT j.id, j.project_id, j.status, j.best_effort, j.priority_value, j.priority_class,
           j.started_at, j.required_gpu, j.required_cpu
    FROM jobs j
    WHERE j.pool = %(pool)s
      AND j.status IN ('ADMITTED', 'RUNNING')
      AND (j.best_effort OR j.priority_value < %(priority)s)
      AND coalesce(j.started_at, %(now)s) + make_interval(secs => j.min_runtime_seconds)
          <= %(now)s
    ORDER BY j.best_effort DESC, j.priority_value, j.started_at DESC NULLS FIRST, j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
),
-- Best effort first, then lowest priority, then most recently started (it loses least work).
ranked AS (
    SELECT c.*,
           row_number() OVER w AS rank,
           sum(c.required_gpu) OVER w AS cum_gpu,
           sum(c.required_cpu) OVER w AS cum_cpu
    FROM candidates c
    WINDOW w AS (ORDER BY c.best_effort DESC, c.priority_value, c.started_at DESC NULLS FIRST,
                          c.id
                 ROWS UNBOUNDED PRECEDING)
),
-- The shortest prefix that frees `need`: a row is in it while the rows before it fall short.
prefix AS (
    SELECT r.* FROM ranked r, params p
    WHERE r.cum_gpu - r.required_gpu < p.need_gpu OR r.cum_cpu - r.required_cpu < p.need_cpu
),
totals AS (
    SELECT coalesce(max(cum_gpu), 0) AS gpu, coalesce(max(cum_cpu), 0) AS cpu, count(*) AS n
    FROM prefix
),
enough AS (
    SELECT t.gpu >= p.need_gpu AND t.cpu >= p.need_cpu AS ok FROM totals t, params p
),
-- The reverse pass: from the last member back to the first, spare a victim when what the
-- others still free covers `need` without it.
reverse_pass (rank, left_gpu, left_cpu, spared) AS (
    SELECT t.n + 1, t.gpu, t.cpu, false FROM totals t
    UNION ALL
    SELECT rp.rank - 1,
           CASE WHEN d.can_spare THEN rp.left_gpu - pr.required_gpu ELSE rp.left_gpu END,
           CASE WHEN d.can_spare THEN rp.left_cpu - pr.required_cpu ELSE rp.left_cpu END,
           d.can_spare
    FROM reverse_pass rp
    JOIN prefix pr ON pr.rank = rp.rank - 1
    CROSS JOIN params p
    CROSS JOIN LATERAL (
        SELECT rp.left_gpu - pr.required_gpu >= p.need_gpu
           AND rp.left_cpu - pr.required_cpu >= p.need_cpu AS can_spare
    ) d
)
SELECT r.id, r.rank, r.project_id, r.status, r.best_effort, r.priority_value, r.priority_class,
       r.started_at, r.required_gpu, r.required_cpu, r.cum_gpu, r.cum_cpu,
       CASE WHEN NOT e.ok THEN 'insufficient'
            WHEN pr.id IS NULL THEN 'not_needed'
            WHEN rv.spared THEN 'spared'
            ELSE 'taken' END AS decision,
       (SELECT count(*) FROM candidates) AS candidate_count
FROM ranked r
CROSS JOIN enough e
LEFT JOIN prefix pr ON pr.id = r.id
LEFT JOIN reverse_pass rv ON rv.rank = r.rank
ORDER BY r.rank

-- victims_reserve --
-- Take the chosen victims for a preemptor, guarded on their current status: together with the
-- row locks taken by victim_rank, two sagas can never take the same victim.
UPDATE jobs
SET status = 'PREEMPTING', preempted_by = %(preemptor_id)s,
    status_reason = %(reason)s, status_actor = %(actor)s
WHERE id = ANY (%(victim_ids)s::uuid[]) AND status IN ('ADMITTED', 'RUNNING')
RETURNING id, status, preempted_from, pod_name, attempt

-- preemption_insert --
-- Record the saga and what it holds for its preemptor from the start.
INSERT INTO preemptions (preemptor_id, pool, need_gpu, need_cpu, held_gpu, held_cpu, quota_gpu,
                         quota_cpu, victims, ranking)
VALUES (%(preemptor_id)s, %(pool)s, %(need_gpu)s, %(need_cpu)s, %(held_gpu)s, %(held_cpu)s,
        %(quota_gpu)s, %(quota_cpu)s, %(victims)s, %(ranking)s)
RETURNING *

-- pool_hold_adjust --
-- Add (or, negative, release) capacity a preemption holds in its pool.
UPDATE pools SET gpu_in_use = gpu_in_use + %(gpu)s, cpu_in_use = cpu_in_use + %(cpu)s,
                 updated_at = now()
WHERE name = %(pool)s

-- usage_lock_path --
-- Lock the usage rows along a project's path, in the global order (project_id).
SELECT u.project_id, u.gpu_in_use, u.cpu_in_use
FROM project_usage u
WHERE u.project_id = ANY (qf_path_ids((SELECT path FROM projects WHERE p_id = %(project_id)s)))
ORDER BY u.project_id
FOR UPDATE

-- usage_hold_adjust --
-- Add (or, negative, release) quota held along a project's path.
UPDATE project_usage
SET gpu_in_use = gpu_in_use + %(gpu)s, cpu_in_use = cpu_in_use + %(cpu)s
WHERE project_id = ANY (qf_path_ids((SELECT path FROM projects WHERE p_id = %(project_id)s)))

-- preemption_active_for_update --
-- A preemptor's active saga, locked.
SELECT * FROM preemptions WHERE preemptor_id = %(preemptor_id)s AND status = 'ACTIVE'
FOR UPDATE

-- preemption_finish --
-- Close a saga: COMPLETED (its preemptor was admitted) or COMPENSATED (undone, with why). The
-- caller has given back what it held; the held_* columns stay as history.
UPDATE preemptions
SET status = %(status)s, reason = %(reason)s, finished_at = clock_timestamp()
WHERE id = %(id)s AND status = 'ACTIVE'
RETURNING *

-- preemption_list_for_job --
-- The sagas a job started, newest first.
SELECT * FROM preemptions WHERE preemptor_id = %(job_id)s ORDER BY created_at DESC

-- preemption_of_victim --
-- The saga that took a job as a victim (most recent).
SELECT p.* FROM preemptions p
WHERE %(job_id)s::uuid = ANY (p.victims)
ORDER BY p.created_at DESC
LIMIT 1
