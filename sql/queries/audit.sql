-- audit_pool_counters --
-- Each pool's trigger-kept counters next to what they must equal: its active jobs plus the
-- capacity active sagas hold for their preemptors (NULL pool: every pool).
SELECT p.name, p.gpu_in_use, p.cpu_in_use,
       coalesce((SELECT sum(required_gpu) FROM jobs j WHERE j.pool = p.name
                 AND j.status IN ('ADMITTED', 'RUNNING', 'PREEMPTING')), 0)
       + coalesce((SELECT sum(held_gpu) FROM preemptions h WHERE h.pool = p.name
                   AND h.status = 'ACTIVE'), 0) AS gpu_expected,
       coalesce((SELECT sum(required_cpu) FROM jobs j WHERE j.pool = p.name
                 AND j.status IN ('ADMITTED', 'RUNNING', 'PREEMPTING')), 0)
       + coalesce((SELECT sum(held_cpu) FROM preemptions h WHERE h.pool = p.name
                   AND h.status = 'ACTIVE'), 0) AS cpu_expected
FROM pools p
WHERE %(pool)s::text IS NULL OR p.name = %(pool)s
ORDER BY p.name

-- audit_project_counters --
-- Each project's subtree usage counter next to what it must equal: the active jobs in the
-- subtree plus the quota active sagas hold there (NULL root: every project).
SELECT a.name, a.path::text AS path, u.gpu_in_use, u.cpu_in_use,
       coalesce((SELECT sum(j.required_gpu) FROM jobs j JOIN projects p ON p.p_id = j.project_id
                 WHERE p.path <@ a.path
                 AND j.status IN ('ADMITTED', 'RUNNING', 'PREEMPTING')), 0)
       + coalesce((SELECT sum(h.quota_gpu) FROM preemptions h JOIN jobs j ON j.id = h.preemptor_id
                   JOIN projects p ON p.p_id = j.project_id
                   WHERE p.path <@ a.path AND h.status = 'ACTIVE'), 0) AS gpu_expected,
       coalesce((SELECT sum(j.required_cpu) FROM jobs j JOIN projects p ON p.p_id = j.project_id
                 WHERE p.path <@ a.path
                 AND j.status IN ('ADMITTED', 'RUNNING', 'PREEMPTING')), 0)
       + coalesce((SELECT sum(h.quota_cpu) FROM preemptions h JOIN jobs j ON j.id = h.preemptor_id
                   JOIN projects p ON p.p_id = j.project_id
                   WHERE p.path <@ a.path AND h.status = 'ACTIVE'), 0) AS cpu_expected
FROM projects a JOIN project_usage u ON u.project_id = a.p_id
WHERE %(root)s::text IS NULL
   OR a.path <@ (SELECT path FROM projects WHERE parent_id IS NULL AND name = %(root)s)
ORDER BY a.path
