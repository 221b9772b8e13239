-- Tenants (users, groups), the project tree, role bindings and storages.
-- DESIGN §2. Every id is a UUID v4: the CHECKs make a v7 or a hand-made id fail loudly.

CREATE EXTENSION IF NOT EXISTS ltree;
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- The supertype: anything that can own a project, a storage or a plan, or hold a role.
CREATE TABLE resource_owners (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid()
                            CHECK (uuid_extract_version(id) = 4),
    kind        text        NOT NULL CHECK (kind IN ('user', 'group')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Target of the (id, kind) foreign keys below: a users row can only extend a 'user' owner.
    UNIQUE (id, kind)
);

CREATE TABLE users (
    id              uuid    PRIMARY KEY,
    kind            text    NOT NULL DEFAULT 'user' CHECK (kind = 'user'),
    username        text    NOT NULL UNIQUE
                            CHECK (username ~ '^[a-z0-9]([a-z0-9._-]{0,62})$'),
    display_name    text    CHECK (length(display_name) <= 200),
    -- Platform operators may change anything; everyone else goes through role bindings.
    platform_admin  boolean NOT NULL DEFAULT false,
    FOREIGN KEY (id, kind) REFERENCES resource_owners (id, kind) ON DELETE CASCADE
);

CREATE TABLE groups (
    id      uuid PRIMARY KEY,
    kind    text NOT NULL DEFAULT 'group' CHECK (kind = 'group'),
    name    text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9]([a-z0-9._-]{0,62})$'),
    FOREIGN KEY (id, kind) REFERENCES resource_owners (id, kind) ON DELETE CASCADE
);

CREATE TABLE group_members (
    group_id uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
-- The effective-role query walks from a user to their groups.
CREATE INDEX group_members_user_idx ON group_members (user_id);

-- CASE, not AND: SQL does not promise to evaluate AND left to right, and "jsonb - text[]" raises
-- on a scalar.
CREATE FUNCTION qf_affinity_config_ok(config jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN jsonb_typeof(config) IS DISTINCT FROM 'object' THEN false
    WHEN config - ARRAY['nodeSelector', 'affinity', 'tolerations'] <> '{}'::jsonb THEN false
    WHEN coalesce(jsonb_typeof(config -> 'nodeSelector'), 'object') <> 'object' THEN false
    WHEN coalesce(jsonb_typeof(config -> 'tolerations'), 'array') <> 'array' THEN false
    WHEN jsonb_typeof(config -> 'affinity') = 'object' THEN
        (config -> 'affinity') - ARRAY['nodeAffinity', 'podAffinity', 'podAntiAffinity']
            = '{}'::jsonb
    WHEN config ? 'affinity' THEN false
    ELSE true
END;

-- A storage has exactly one owner (user or group) through the supertype: no owner_type column.
CREATE TABLE storages (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid()
                                 CHECK (uuid_extract_version(id) = 4),
    owner_id         uuid        NOT NULL REFERENCES resource_owners (id),
    name             text        NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    affinity_config  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name),
    -- Only scheduling hints may reach a pod spec from here. Anything else (hostPath, privileged,
    -- hostNetwork, securityContext …) would break the Pod Security "restricted" profile.
    -- The domain model validates the inside of each key; the database guards the envelope.
    CONSTRAINT storages_affinity_config_keys CHECK (qf_affinity_config_ok(affinity_config))
);

-- The label of a project in the ltree is derived from its id, so a rename never rewrites paths.
CREATE FUNCTION qf_project_label(p_id uuid) RETURNS ltree
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN text2ltree('p' || replace(p_id::text, '-', ''));

CREATE TABLE projects (
    p_id        uuid        PRIMARY KEY DEFAULT gen_random_uuid()
                            CHECK (uuid_extract_version(p_id) = 4),
    parent_id   uuid        REFERENCES projects (p_id),
    owner_id    uuid        NOT NULL REFERENCES resource_owners (id),
    name        text        NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$'),
    path        ltree       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id IS DISTINCT FROM p_id),
    -- Siblings have distinct names, so "org/team/project" names one project.
    UNIQUE NULLS NOT DISTINCT (parent_id, name)
);
-- Ancestors (@>) and descendants (<@) of a path.
CREATE INDEX projects_path_gist ON projects USING gist (path);
-- Descendants are contiguous in ltree's btree order, so a covering range scan counts a
-- subtree without visiting the heap (DESIGN §8: 6× faster than GiST at 11k nodes).
CREATE INDEX projects_path_btree ON projects USING btree (path) INCLUDE (p_id);
CREATE INDEX projects_parent_idx ON projects (parent_id);

-- On insert the database computes the path: callers name a parent, never a path.
CREATE FUNCTION qf_projects_set_path() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parent_path ltree;
BEGIN
    IF NEW.parent_id IS NULL THEN
        NEW.path := qf_project_label(NEW.p_id);
    ELSE
        SELECT path INTO parent_path FROM projects WHERE p_id = NEW.parent_id;
        IF parent_path IS NULL THEN
            RAISE EXCEPTION 'parent project % does not exist', NEW.parent_id
                USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'projects_parent_id_fkey';
        END IF;
        NEW.path := parent_path || qf_project_label(NEW.p_id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER projects_set_path BEFORE INSERT ON projects
FOR EACH ROW EXECUTE FUNCTION qf_projects_set_path();

-- The invariant "path = parent's path + own label" holds after every statement. A constraint
-- trigger runs at the end of the statement, so a subtree move written as one UPDATE is checked
-- on its final state, and a move under the node's own descendant (which cannot be consistent)
-- is refused by the database even if the caller forgot to check.
CREATE FUNCTION qf_projects_check_path() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    expected ltree;
BEGIN
    IF NEW.parent_id IS NULL THEN
        expected := qf_project_label(NEW.p_id);
    ELSE
        SELECT path || qf_project_label(NEW.p_id) INTO expected
        FROM projects WHERE p_id = NEW.parent_id;
    END IF;
    IF NEW.path IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'project % has path % but its parent implies %', NEW.p_id, NEW.path,
            expected USING ERRCODE = 'check_violation', CONSTRAINT = 'projects_path_consistent';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.path IS DISTINCT FROM OLD.path AND EXISTS (
        SELECT 1 FROM projects c
        WHERE c.parent_id = NEW.p_id AND c.path IS DISTINCT FROM NEW.path || qf_project_label(c.p_id)
    ) THEN
        RAISE EXCEPTION 'project % moved without its children', NEW.p_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'projects_path_consistent';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER projects_path_consistent
AFTER INSERT OR UPDATE OF path, parent_id ON projects
FOR EACH ROW EXECUTE FUNCTION qf_projects_check_path();

-- Roles are ordered: max() over an enum picks the strongest binding.
CREATE TYPE qf_role AS ENUM ('viewer', 'member', 'admin');

CREATE TABLE role_bindings (
    principal_id uuid        NOT NULL REFERENCES resource_owners (id) ON DELETE CASCADE,
    project_id   uuid        NOT NULL REFERENCES projects (p_id) ON DELETE CASCADE,
    role         qf_role     NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal_id, project_id)
);
CREATE INDEX role_bindings_project_idx ON role_bindings (project_id);
