-- plan_insert --
-- One segment of a weekly plan. An overlap with a plan of the same project and resource is
-- SQLSTATE 23P01 on resource_plans_no_overlap.
INSERT INTO resource_plans (plan_group, project_id, resource_owner_id, resource_type, quantity,
                            week_window)
VALUES (%(plan_group)s, %(project_id)s, %(resource_owner_id)s, %(resource_type)s, %(quantity)s,
        int4range(%(lower)s, %(upper)s))
RETURNING id

-- plan_overlapping --
-- The existing plan groups a window would overlap (to name them in the conflict message).
SELECT DISTINCT g.plan_group, g.resource_type, g.quantity,
       array_agg(ARRAY[lower(g.week_window), upper(g.week_window)]) OVER (PARTITION BY g.plan_group)
           AS segments
FROM resource_plans r
JOIN resource_plans g ON g.plan_group = r.plan_group
WHERE r.project_id = %(project_id)s AND r.resource_type = %(resource_type)s
  AND r.week_window && int4range(%(lower)s, %(upper)s)

-- plan_list --
-- A project's plans (both halves of a wrapped window as one group), by window.
SELECT plan_group, project_id, resource_owner_id, resource_type, quantity,
       array_agg(ARRAY[lower(week_window), upper(week_window)] ORDER BY lower(week_window))
           AS segments
FROM resource_plans
WHERE project_id = %(project_id)s
GROUP BY plan_group, project_id, resource_owner_id, resource_type, quantity
ORDER BY resource_type, min(lower(week_window))

-- plan_delete_group --
-- Remove a plan: both halves of a wrapped window go together.
DELETE FROM resource_plans WHERE plan_group = %(plan_group)s RETURNING id

-- plan_quota_at --
-- Quota in force at one second of the week for a project and each of its ancestors that has a
-- covering plan, with the subtree usage: what admission compares.
SELECT a.p_id AS project_id, a.name, nlevel(a.path) AS depth, rp.resource_type, rp.quantity,
       CASE rp.resource_type WHEN 'GPU' THEN u.gpu_in_use ELSE u.cpu_in_use END AS in_use,
       lower(rp.week_window) AS lower, upper(rp.week_window) AS upper, rp.plan_group
FROM projects p
JOIN projects a ON a.path @> p.path
JOIN resource_plans rp ON rp.project_id = a.p_id AND rp.week_window @> %(sow)s::int
JOIN project_usage u ON u.project_id = a.p_id
WHERE p.p_id = %(project_id)s
ORDER BY nlevel(a.path), rp.resource_type

-- plan_group_project --
-- The project a plan belongs to.
SELECT DISTINCT project_id FROM resource_plans WHERE plan_group = %(plan_group)s
