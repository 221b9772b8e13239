-- owner_insert --
-- The supertype row every user and group extends.
INSERT INTO resource_owners (kind) VALUES (%(kind)s) RETURNING id

-- user_insert --
-- A user, extending an owner row of kind 'user'.
INSERT INTO users (id, username, display_name, platform_admin)
VALUES (%(id)s, %(username)s, %(display_name)s, %(platform_admin)s)
RETURNING id, username, display_name, platform_admin

-- group_insert --
-- A group, extending an owner row of kind 'group'.
INSERT INTO groups (id, name) VALUES (%(id)s, %(name)s) RETURNING id, name

-- group_member_insert --
-- Make a user a member of a group.
INSERT INTO group_members (group_id, user_id) VALUES (%(group_id)s, %(user_id)s)

-- user_get_by_username --
-- One user by name.
SELECT id, username, display_name, platform_admin FROM users WHERE username = %(username)s

-- user_get --
-- One user by id.
SELECT id, username, display_name, platform_admin FROM users WHERE id = %(id)s

-- group_get_by_name --
-- One group by name.
SELECT id, name FROM groups WHERE name = %(name)s

-- user_list --
-- Every user, by name.
SELECT id, username, display_name, platform_admin FROM users ORDER BY username

-- group_list --
-- Every group with its members' names.
SELECT g.id, g.name,
       coalesce(array_agg(u.username ORDER BY u.username) FILTER (WHERE u.id IS NOT NULL),
                '{}') AS members
FROM groups g
LEFT JOIN group_members m ON m.group_id = g.id
LEFT JOIN users u ON u.id = m.user_id
GROUP BY g.id, g.name
ORDER BY g.name

-- owner_get --
-- An owner (user or group) by id, with its name.
SELECT o.id, o.kind, coalesce(u.username, g.name) AS name
FROM resource_owners o
LEFT JOIN users u ON u.id = o.id
LEFT JOIN groups g ON g.id = o.id
WHERE o.id = %(id)s

-- owner_find_by_name --
-- Owners called `name`: a user, a group, or (ambiguously) both.
SELECT id, 'user' AS kind, username AS name FROM users WHERE username = %(name)s
UNION ALL
SELECT id, 'group', name FROM groups WHERE name = %(name)s

-- role_binding_upsert --
-- Grant `role` on a project (and so its whole subtree); a second grant replaces the first.
INSERT INTO role_bindings (principal_id, project_id, role)
VALUES (%(principal_id)s, %(project_id)s, %(role)s)
ON CONFLICT (principal_id, project_id) DO UPDATE SET role = EXCLUDED.role
RETURNING principal_id, project_id, role

-- role_binding_list --
-- Bindings on a project and its ancestors (what applies there), nearest last.
SELECT rb.principal_id, o.kind, coalesce(u.username, g.name) AS principal, rb.project_id,
       a.name AS project, rb.role
FROM projects p
JOIN projects a ON a.path @> p.path
JOIN role_bindings rb ON rb.project_id = a.p_id
JOIN resource_owners o ON o.id = rb.principal_id
LEFT JOIN users u ON u.id = o.id
LEFT JOIN groups g ON g.id = o.id
WHERE p.p_id = %(project_id)s
ORDER BY nlevel(a.path), principal

-- role_effective --
-- The strongest role a user holds on a project: bindings of the user or of any group they are
-- in, on the project or any ancestor (a binding applies to its subtree); owning the project or
-- an ancestor (directly or through a group) counts as admin; a platform admin is admin
-- everywhere. One query, whatever the depth: no walk up the tree from Python.
WITH target AS (
    SELECT path FROM projects WHERE p_id = %(project_id)s
),
principals AS (
    SELECT %(user_id)s::uuid AS id
    UNION ALL
    SELECT group_id FROM group_members WHERE user_id = %(user_id)s
),
ancestors AS (
    SELECT a.p_id, a.owner_id FROM projects a, target t WHERE a.path @> t.path
)
SELECT max(role) AS role FROM (
    SELECT rb.role FROM role_bindings rb
    JOIN ancestors a ON a.p_id = rb.project_id
    JOIN principals pr ON pr.id = rb.principal_id
    UNION ALL
    SELECT 'admin'::qf_role FROM ancestors a JOIN principals pr ON pr.id = a.owner_id
    UNION ALL
    SELECT 'admin'::qf_role FROM users u, target
    WHERE u.id = %(user_id)s AND u.platform_admin
) roles
