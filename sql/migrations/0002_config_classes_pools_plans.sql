-- Versioned project configuration, priority classes, pools and weekly resource plans.

-- Content-addressed: the key is the SHA-256 of the canonical JSON of the content (computed by
-- domain.hashing), so identical content is stored once whatever its key order or whitespace.
CREATE TABLE config_blobs (
    hash        text        PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    content     jsonb       NOT NULL CHECK (jsonb_typeof(content) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE config_commits (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid()
                             CHECK (uuid_extract_version(id) = 4),
    project_id   uuid        NOT NULL REFERENCES projects (p_id) ON DELETE CASCADE,
    blob_hash    text        NOT NULL REFERENCES config_blobs (hash),
    parent_id    uuid,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    author_id    uuid        NOT NULL REFERENCES resource_owners (id),
    message      text        NOT NULL CHECK (length(message) BETWEEN 1 AND 2000),
    version_tag  text        CHECK (version_tag ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    UNIQUE (id, project_id),
    -- A parent is a commit of the same project.
    FOREIGN KEY (parent_id, project_id) REFERENCES config_commits (id, project_id),
    -- History is linear: a commit has at most one child, so a project has exactly one head
    -- (the commit without a child) and a commit naming a stale parent is a unique violation —
    -- the compare-and-swap is the constraint itself.
    CONSTRAINT config_commits_one_child UNIQUE (parent_id)
);
-- …and at most one root.
CREATE UNIQUE INDEX config_commits_one_root ON config_commits (project_id)
    WHERE parent_id IS NULL;
CREATE UNIQUE INDEX config_commits_tag ON config_commits (project_id, version_tag)
    WHERE version_tag IS NOT NULL;
CREATE INDEX config_commits_project_idx ON config_commits (project_id, created_at);

CREATE TYPE qf_preemption_policy AS ENUM ('PreemptLowerPriority', 'Never');

CREATE TABLE priority_classes (
    name                 text                 PRIMARY KEY
                                              CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$'),
    value                integer              NOT NULL
                                              CHECK (value BETWEEN -1000000000 AND 1000000000),
    preemption_policy    qf_preemption_policy NOT NULL DEFAULT 'PreemptLowerPriority',
    global_default       boolean              NOT NULL DEFAULT false,
    -- Anti-thrashing: a job of this class cannot be a victim before it has run this long.
    min_runtime_seconds  integer              NOT NULL DEFAULT 0
                                              CHECK (min_runtime_seconds BETWEEN 0 AND 604800),
    description          text                 CHECK (length(description) <= 500),
    created_at           timestamptz          NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX priority_classes_one_default ON priority_classes (global_default)
    WHERE global_default;

-- The default classes; deploy/k8s has the matching Kubernetes PriorityClasses.
INSERT INTO priority_classes (name, value, preemption_policy, global_default, description) VALUES
    ('low',    100,   'PreemptLowerPriority', false, 'Batch and exploratory work; first to go.'),
    ('normal', 1000,  'PreemptLowerPriority', true,  'The default.'),
    ('high',   10000, 'PreemptLowerPriority', false, 'Deadlines; preempts low and normal.');

-- What a pool (the cluster or a node pool) can run. The *_in_use counters are maintained by the
-- jobs triggers (migration 0003) and by preemption holds; nothing else writes them.
CREATE TABLE pools (
    name          text        PRIMARY KEY CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$'),
    gpu_capacity  integer     NOT NULL CHECK (gpu_capacity BETWEEN 0 AND 1000000),
    cpu_capacity  integer     NOT NULL CHECK (cpu_capacity BETWEEN 0 AND 10000000),
    gpu_in_use    integer     NOT NULL DEFAULT 0 CHECK (gpu_in_use >= 0),
    cpu_in_use    integer     NOT NULL DEFAULT 0 CHECK (cpu_in_use >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE qf_resource AS ENUM ('GPU', 'CPU');

CREATE TABLE resource_plans (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid()
                                   CHECK (uuid_extract_version(id) = 4),
    -- Both halves of a window that crosses Sunday→Monday share a plan_group and are written and
    -- removed together.
    plan_group         uuid        NOT NULL CHECK (uuid_extract_version(plan_group) = 4),
    project_id         uuid        NOT NULL REFERENCES projects (p_id) ON DELETE CASCADE,
    resource_owner_id  uuid        NOT NULL REFERENCES resource_owners (id),
    resource_type      qf_resource NOT NULL,
    quantity           integer     NOT NULL CHECK (quantity > 0 AND quantity <= 10000000),
    -- Seconds of the week, Monday 00:00 = 0, in the configured time zone; always [a, b).
    week_window        int4range   NOT NULL CHECK (
                           NOT isempty(week_window) AND week_window <@ int4range(0, 604800)
                       ),
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT resource_plans_no_overlap EXCLUDE USING gist (
        project_id WITH =, resource_type WITH =, week_window WITH &&
    )
);
CREATE INDEX resource_plans_group_idx ON resource_plans (plan_group);
