-- project_insert --
-- A new project; the database computes its path from the parent's.
INSERT INTO projects (name, owner_id, parent_id)
VALUES (%(name)s, %(owner_id)s, %(parent_id)s)
RETURNING p_id, parent_id, owner_id, name, path::text AS path, created_at

-- project_get --
-- One project by id.
SELECT p_id, parent_id, owner_id, name, path::text AS path, created_at
FROM projects WHERE p_id = %(project_id)s

-- project_get_by_names --
-- Resolve "org/team/project": walk the names from a root, one level per name.
WITH RECURSIVE names AS (
    SELECT name, ord FROM unnest(%(names)s::text[]) WITH ORDINALITY AS n(name, ord)
),
walk AS (
    SELECT p.p_id, 1::bigint AS depth
    FROM projects p JOIN names n ON n.ord = 1 AND p.name = n.name
    WHERE p.parent_id IS NULL
    UNION ALL
    SELECT c.p_id, w.depth + 1
    FROM walk w
    JOIN names n ON n.ord = w.depth + 1
    JOIN projects c ON c.parent_id = w.p_id AND c.name = n.name
)
SELECT p.p_id, p.parent_id, p.owner_id, p.name, p.path::text AS path, p.created_at
FROM walk w JOIN projects p ON p.p_id = w.p_id
WHERE w.depth = cardinality(%(names)s::text[])

-- project_ancestors --
-- A project's ancestors, root first, excluding the project itself (GiST on path, @>).
SELECT a.p_id, a.parent_id, a.owner_id, a.name, a.path::text AS path, a.created_at
FROM projects a, projects p
WHERE p.p_id = %(project_id)s AND a.path @> p.path AND a.p_id <> p.p_id
ORDER BY nlevel(a.path)

-- project_descendants --
-- A project's subtree below it, in tree order: the paths strictly between its own and
-- qf_subtree_end of it, one range of a btree on path that is already in tree order. The bounds
-- come from scalar sub-SELECTs, not a join: after a join the planner sorts again. The
-- equivalent `d.path <@ p.path` goes through GiST and must sort (docs/en/benchmarks.md).
SELECT d.p_id, d.parent_id, d.owner_id, d.name, d.path::text AS path, d.created_at
FROM projects d
WHERE d.path > (SELECT path FROM projects WHERE p_id = %(project_id)s)
  AND d.path < qf_subtree_end((SELECT path FROM projects WHERE p_id = %(project_id)s))
ORDER BY d.path

-- project_descendant_count --
-- The size of a subtree below a project, counted server-side: an index-only scan of the same
-- btree range as project_descendants.
SELECT count(*) AS n
FROM projects d
WHERE d.path > (SELECT path FROM projects WHERE p_id = %(project_id)s)
  AND d.path < qf_subtree_end((SELECT path FROM projects WHERE p_id = %(project_id)s))

-- project_tree --
-- Every project (or one subtree) in tree order, with names along the path for display.
SELECT d.p_id, d.parent_id, d.owner_id, d.name, d.path::text AS path, d.created_at,
       nlevel(d.path) AS depth,
       coalesce(u.username, g.name) AS owner
FROM projects d
LEFT JOIN users u ON u.id = d.owner_id
LEFT JOIN groups g ON g.id = d.owner_id
WHERE %(root_id)s::uuid IS NULL
   OR d.path <@ (SELECT path FROM projects WHERE p_id = %(root_id)s)
ORDER BY d.path

-- project_usage_lock --
-- Block every job transition that moves usage until this transaction ends: a subtree move
-- rewrites paths that those transitions read to find the ancestors they account to.
LOCK TABLE project_usage IN EXCLUSIVE MODE

-- project_move_subtree --
-- Move a project and its whole subtree under a new parent (NULL: make it a root) in one UPDATE:
-- every path in the subtree swaps the old prefix for the new parent's path. A new parent inside
-- the moved subtree matches no row here (and the constraint trigger projects_path_consistent
-- would refuse the result anyway).
WITH src AS (
    SELECT p_id, path FROM projects WHERE p_id = %(project_id)s
),
dst AS (
    SELECT p_id, path FROM projects WHERE p_id = %(new_parent_id)s
)
UPDATE projects p
SET path = coalesce(dst.path, ''::ltree) || subpath(p.path, nlevel(src.path) - 1),
    parent_id = CASE WHEN p.p_id = src.p_id THEN dst.p_id ELSE p.parent_id END
FROM src LEFT JOIN dst ON true
WHERE p.path <@ src.path
  AND (%(new_parent_id)s::uuid IS NULL OR dst.p_id IS NOT NULL)
  AND (dst.path IS NULL OR NOT dst.path <@ src.path)
RETURNING p.p_id
