-- config_blob_insert --
-- Store content under its hash; identical content is stored once.
INSERT INTO config_blobs (hash, content) VALUES (%(hash)s, %(content)s)
ON CONFLICT (hash) DO NOTHING

-- config_blob_get --
-- The content stored under a hash.
SELECT hash, content FROM config_blobs WHERE hash = %(hash)s

-- config_commit_insert --
-- A new head. Naming a parent that already has a child (someone committed since the author read
-- the head) violates config_commits_one_child: the compare-and-swap is that constraint.
INSERT INTO config_commits (project_id, blob_hash, parent_id, author_id, message)
VALUES (%(project_id)s, %(blob_hash)s, %(parent_id)s, %(author_id)s, %(message)s)
RETURNING id, project_id, blob_hash, parent_id, created_at, author_id, message, version_tag

-- config_head --
-- A project's head: its only commit without a child.
SELECT c.id, c.project_id, c.blob_hash, c.parent_id, c.created_at, c.author_id, c.message,
       c.version_tag
FROM config_commits c
WHERE c.project_id = %(project_id)s
  AND NOT EXISTS (SELECT 1 FROM config_commits ch WHERE ch.parent_id = c.id)

-- config_head_in_force --
-- The configuration in force for a project: its own head, else the nearest ancestor's.
SELECT c.id, c.project_id, c.blob_hash, c.parent_id, c.created_at, c.author_id, c.message,
       c.version_tag, b.content
FROM projects p
JOIN projects a ON a.path @> p.path
JOIN config_commits c ON c.project_id = a.p_id
JOIN config_blobs b ON b.hash = c.blob_hash
WHERE p.p_id = %(project_id)s
  AND NOT EXISTS (SELECT 1 FROM config_commits ch WHERE ch.parent_id = c.id)
ORDER BY nlevel(a.path) DESC
LIMIT 1

-- config_commit_get --
-- One commit with its content.
SELECT c.id, c.project_id, c.blob_hash, c.parent_id, c.created_at, c.author_id, c.message,
       c.version_tag, b.content
FROM config_commits c JOIN config_blobs b ON b.hash = c.blob_hash
WHERE c.id = %(commit_id)s

-- config_commit_by_tag --
-- The commit a tag names in a project.
SELECT c.id, c.project_id, c.blob_hash, c.parent_id, c.created_at, c.author_id, c.message,
       c.version_tag, b.content
FROM config_commits c JOIN config_blobs b ON b.hash = c.blob_hash
WHERE c.project_id = %(project_id)s AND c.version_tag = %(tag)s

-- config_log --
-- A project's history from the head back to the root (newest first).
WITH RECURSIVE chain AS (
    SELECT c.*, 1 AS n FROM config_commits c
    WHERE c.project_id = %(project_id)s
      AND NOT EXISTS (SELECT 1 FROM config_commits ch WHERE ch.parent_id = c.id)
    UNION ALL
    SELECT p.*, chain.n + 1 FROM config_commits p JOIN chain ON p.id = chain.parent_id
)
SELECT ch.id, ch.project_id, ch.blob_hash, ch.parent_id, ch.created_at, ch.author_id,
       ch.message, ch.version_tag, coalesce(u.username, '?') AS author
FROM chain ch LEFT JOIN users u ON u.id = ch.author_id
ORDER BY ch.n
LIMIT %(limit)s

-- config_commit_tag --
-- Name a commit; a tag is set once and is unique within the project.
UPDATE config_commits SET version_tag = %(tag)s
WHERE id = %(commit_id)s AND project_id = %(project_id)s AND version_tag IS NULL
RETURNING id, project_id, blob_hash, parent_id, created_at, author_id, message, version_tag
