-- Jobs, their append-only history, the usage counters and the state machine (DESIGN §3, §4).
--
-- Accounting invariants, kept by the triggers below and checked by the tests:
--   pools.gpu_in_use          = Σ required_gpu of the pool's ADMITTED/RUNNING/PREEMPTING jobs
--                               + Σ held_gpu of the pool's ACTIVE preemptions
--   project_usage.gpu_in_use  = Σ required_gpu of ADMITTED/RUNNING/PREEMPTING jobs in the subtree
--                               + the quota held by ACTIVE preemptions for preemptors in it
-- (and the same for CPU). Counters, not sums over a snapshot: a claimer reads them after taking
-- the row lock, so two claimers can never both spend the same last GPU.

CREATE TYPE qf_job_status AS ENUM (
    'PENDING', 'ADMITTED', 'RUNNING', 'PREEMPTING', 'PREEMPTED',
    'SUCCEEDED', 'FAILED', 'CANCELLED'
);

-- States whose jobs hold capacity and quota.
CREATE FUNCTION qf_status_active(s qf_job_status) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN s IN ('ADMITTED', 'RUNNING', 'PREEMPTING');

-- The ids on a project path, root first, read back from the labels (qf_project_label).
CREATE FUNCTION qf_path_ids(path ltree) RETURNS uuid[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(
    SELECT substr(label, 2)::uuid
    FROM unnest(string_to_array(ltree2text(path), '.')) WITH ORDINALITY AS t(label, n)
    ORDER BY n
);

-- Seconds since Monday 00:00 of the week containing `at`, read in time zone `tz`.
CREATE FUNCTION qf_second_of_week(at timestamptz, tz text) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ((extract(isodow FROM at AT TIME ZONE tz)::int - 1) * 86400
        + floor(extract(epoch FROM (at AT TIME ZONE tz)::time))::int);

CREATE TABLE jobs (
    id                 uuid                 PRIMARY KEY CHECK (uuid_extract_version(id) = 4),
    name               text                 NOT NULL DEFAULT ''
                                            CHECK (length(name) <= 200),
    project_id         uuid                 NOT NULL REFERENCES projects (p_id),
    pool               text                 NOT NULL REFERENCES pools (name),
    submitted_by       uuid                 NOT NULL REFERENCES users (id),
    priority_class     text                 NOT NULL REFERENCES priority_classes (name),
    -- Snapshots taken at submit: changing a class later does not reorder queued jobs.
    priority_value     integer              NOT NULL,
    preemption_policy  qf_preemption_policy NOT NULL,
    min_runtime_seconds integer             NOT NULL DEFAULT 0 CHECK (min_runtime_seconds >= 0),
    required_gpu       integer              NOT NULL CHECK (required_gpu BETWEEN 0 AND 4096),
    required_cpu       integer              NOT NULL CHECK (required_cpu BETWEEN 0 AND 65536),
    image              text                 CHECK (length(image) <= 500),
    command            text[]               CHECK (cardinality(command) <= 100),
    -- A hint for the Kubernetes emulator (how long the workload runs); real clusters ignore it.
    run_seconds        double precision     CHECK (run_seconds >= 0 AND run_seconds <= 31536000),
    storage_id         uuid                 REFERENCES storages (id),
    config_commit_id   uuid                 REFERENCES config_commits (id),
    status             qf_job_status        NOT NULL DEFAULT 'PENDING',
    -- Why the job is in its status and who put it there; copied into job_events by the trigger.
    status_reason      text                 CHECK (length(status_reason) <= 2000),
    status_actor       text                 CHECK (length(status_actor) <= 200),
    created_at         timestamptz          NOT NULL DEFAULT clock_timestamp(),
    admitted_at        timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    attempt            integer              NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    pod_name           text                 CHECK (length(pod_name) <= 253),
    preempted_by       uuid                 REFERENCES jobs (id),
    preempted_from     qf_job_status        CHECK (preempted_from IN ('ADMITTED', 'RUNNING')),
    -- Decided at admission: admitted without any covering plan, i.e. on idle capacity.
    best_effort        boolean              NOT NULL DEFAULT false,
    -- Anti-thrashing backoff after repeated preemption (NULL: admissible now).
    not_before         timestamptz,
    CHECK (required_gpu > 0 OR required_cpu > 0),
    CHECK ((status = 'PREEMPTING') = (preempted_from IS NOT NULL))
);

-- The claim order (DESIGN §4.3): an index scan yields pending jobs of a pool in queue order.
CREATE INDEX jobs_claim_order ON jobs (pool, priority_value DESC, created_at, id)
    WHERE status = 'PENDING';
-- The victim order (DESIGN §5): best effort first, lowest priority, most recently started.
CREATE INDEX jobs_victim_order
    ON jobs (pool, best_effort DESC, priority_value, started_at DESC NULLS FIRST, id)
    WHERE status IN ('ADMITTED', 'RUNNING');
CREATE INDEX jobs_project_idx ON jobs (project_id, created_at);
CREATE INDEX jobs_status_idx ON jobs (status) WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED');
CREATE INDEX jobs_preempted_by_idx ON jobs (preempted_by) WHERE preempted_by IS NOT NULL;

CREATE TABLE job_events (
    id           uuid          PRIMARY KEY DEFAULT gen_random_uuid()
                               CHECK (uuid_extract_version(id) = 4),
    job_id       uuid          NOT NULL REFERENCES jobs (id),
    from_status  qf_job_status,
    to_status    qf_job_status NOT NULL,
    -- clock_timestamp(), not now(): events of one transaction stay ordered, and every change of
    -- a pool's usage is serialised by the pool row lock, so ordering a pool's events by `at`
    -- replays its usage exactly.
    at           timestamptz   NOT NULL DEFAULT clock_timestamp(),
    reason       text,
    actor        text,
    attempt      integer       NOT NULL,
    pool         text          NOT NULL,
    gpu          integer       NOT NULL,
    cpu          integer       NOT NULL
);
CREATE INDEX job_events_job_idx ON job_events (job_id, at);
CREATE INDEX job_events_pool_idx ON job_events (pool, at);

CREATE FUNCTION qf_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'QF005';
END $$;

CREATE TRIGGER job_events_append_only BEFORE UPDATE OR DELETE ON job_events
FOR EACH ROW EXECUTE FUNCTION qf_refuse_change();

-- Subtree usage per project (the project and all its descendants).
CREATE TABLE project_usage (
    project_id  uuid    PRIMARY KEY REFERENCES projects (p_id) ON DELETE CASCADE,
    gpu_in_use  integer NOT NULL DEFAULT 0 CHECK (gpu_in_use >= 0),
    cpu_in_use  integer NOT NULL DEFAULT 0 CHECK (cpu_in_use >= 0)
);

CREATE FUNCTION qf_projects_add_usage_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO project_usage (project_id) VALUES (NEW.p_id);
    RETURN NULL;
END $$;

CREATE TRIGGER projects_usage_row AFTER INSERT ON projects
FOR EACH ROW EXECUTE FUNCTION qf_projects_add_usage_row();

-- A moved subtree takes its usage with it: the old ancestors lose it, the new ones gain it.
-- The move itself (store/topology.py) first locks project_usage in EXCLUSIVE mode, so no job
-- transition can add or remove usage along a path while that path is being rewritten.
CREATE FUNCTION qf_projects_move_usage() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH moved_roots AS (
        -- the top of each moved subtree: the only rows whose parent changed
        SELECT n.p_id, n.path AS new_path, o.path AS old_path
        FROM new_rows n JOIN old_rows o USING (p_id)
        WHERE n.parent_id IS DISTINCT FROM o.parent_id
    ),
    deltas AS (
        SELECT anc.id AS project_id, sum(anc.sign * u.gpu_in_use) AS gpu,
               sum(anc.sign * u.cpu_in_use) AS cpu
        FROM moved_roots m
        JOIN project_usage u ON u.project_id = m.p_id
        CROSS JOIN LATERAL (
            SELECT id, -1 AS sign FROM unnest(qf_path_ids(subpath(m.old_path, 0, -1))) AS id
            WHERE nlevel(m.old_path) > 1
            UNION ALL
            SELECT id, 1 FROM unnest(qf_path_ids(subpath(m.new_path, 0, -1))) AS id
            WHERE nlevel(m.new_path) > 1
        ) AS anc
        GROUP BY anc.id
    )
    UPDATE project_usage u
    SET gpu_in_use = u.gpu_in_use + d.gpu, cpu_in_use = u.cpu_in_use + d.cpu
    FROM deltas d
    WHERE u.project_id = d.project_id AND (d.gpu <> 0 OR d.cpu <> 0);
    RETURN NULL;
END $$;

CREATE TRIGGER projects_move_usage AFTER UPDATE ON projects
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION qf_projects_move_usage();

CREATE TYPE qf_preemption_status AS ENUM ('ACTIVE', 'COMPLETED', 'COMPENSATED');

-- One row per preemption saga. While ACTIVE it holds, for its preemptor, the pool capacity the
-- saga has freed so far (held_*: counted in pools.*_in_use) and the preemptor's quota
-- (quota_*: counted in project_usage of the preemptor's ancestors), so no other claimer can take
-- what the evictions free (the race kubernetes-sigs/kueue#13662 describes).
CREATE TABLE preemptions (
    id            uuid                 PRIMARY KEY DEFAULT gen_random_uuid()
                                       CHECK (uuid_extract_version(id) = 4),
    preemptor_id  uuid                 NOT NULL REFERENCES jobs (id),
    pool          text                 NOT NULL REFERENCES pools (name),
    status        qf_preemption_status NOT NULL DEFAULT 'ACTIVE',
    need_gpu      integer              NOT NULL CHECK (need_gpu >= 0),
    need_cpu      integer              NOT NULL CHECK (need_cpu >= 0),
    held_gpu      integer              NOT NULL DEFAULT 0 CHECK (held_gpu >= 0),
    held_cpu      integer              NOT NULL DEFAULT 0 CHECK (held_cpu >= 0),
    quota_gpu     integer              NOT NULL DEFAULT 0 CHECK (quota_gpu >= 0),
    quota_cpu     integer              NOT NULL DEFAULT 0 CHECK (quota_cpu >= 0),
    victims       uuid[]               NOT NULL,
    -- The ranked candidates and why each was taken or spared, as the victim query saw them.
    ranking       jsonb                NOT NULL,
    reason        text,
    created_at    timestamptz          NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    CHECK ((status = 'ACTIVE') = (finished_at IS NULL))
);
CREATE UNIQUE INDEX preemptions_one_active ON preemptions (preemptor_id) WHERE status = 'ACTIVE';
CREATE INDEX preemptions_preemptor_idx ON preemptions (preemptor_id, created_at);

-- The state machine of DESIGN §3, as data.
CREATE TABLE job_transitions (
    from_status qf_job_status NOT NULL,
    to_status   qf_job_status NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO job_transitions VALUES
    ('PENDING', 'ADMITTED'), ('PENDING', 'CANCELLED'),
    ('ADMITTED', 'RUNNING'), ('ADMITTED', 'PREEMPTING'), ('ADMITTED', 'CANCELLED'),
    -- a pod that cannot be created at all (e.g. an image the cluster refuses) fails the job
    ('ADMITTED', 'FAILED'),
    ('RUNNING', 'SUCCEEDED'), ('RUNNING', 'FAILED'), ('RUNNING', 'PREEMPTING'),
    ('RUNNING', 'CANCELLED'),
    ('PREEMPTING', 'PREEMPTED'),
    -- compensation: back to the state the victim was taken from (checked in the trigger)
    ('PREEMPTING', 'RUNNING'), ('PREEMPTING', 'ADMITTED'),
    -- a victim's pod may end on its own, or be cancelled, while the saga runs
    ('PREEMPTING', 'SUCCEEDED'), ('PREEMPTING', 'FAILED'), ('PREEMPTING', 'CANCELLED'),
    ('PREEMPTED', 'PENDING'), ('PREEMPTED', 'CANCELLED');

CREATE FUNCTION qf_jobs_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status <> 'PENDING' THEN
        RAISE EXCEPTION 'job % must be submitted PENDING, not %', NEW.id, NEW.status
            USING ERRCODE = 'QF001';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER jobs_before_insert BEFORE INSERT ON jobs
FOR EACH ROW EXECUTE FUNCTION qf_jobs_before_insert();

-- Legality and bookkeeping of one transition.
CREATE FUNCTION qf_jobs_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM job_transitions
                   WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'illegal job transition % -> % for job %', OLD.status, NEW.status, OLD.id
            USING ERRCODE = 'QF001';
    END IF;
    IF OLD.status = 'PREEMPTING' AND NEW.status IN ('RUNNING', 'ADMITTED')
       AND NEW.status IS DISTINCT FROM OLD.preempted_from THEN
        RAISE EXCEPTION 'job % was taken as a victim from %, it cannot be returned to %',
            OLD.id, OLD.preempted_from, NEW.status USING ERRCODE = 'QF001';
    END IF;
    IF NEW.status = 'PREEMPTING' AND NEW.preempted_by IS NULL THEN
        RAISE EXCEPTION 'job % cannot become PREEMPTING without preempted_by', OLD.id
            USING ERRCODE = 'QF001';
    END IF;

    CASE NEW.status
        WHEN 'ADMITTED' THEN
            NEW.admitted_at := coalesce(NEW.admitted_at, clock_timestamp());
        WHEN 'RUNNING' THEN
            NEW.started_at := coalesce(NEW.started_at, clock_timestamp());
        WHEN 'PREEMPTING' THEN
            NEW.preempted_from := OLD.status;
        WHEN 'PENDING' THEN
            -- requeue after eviction: a new attempt keeps its place (created_at is unchanged)
            NEW.attempt := OLD.attempt + 1;
            NEW.admitted_at := NULL;
            NEW.started_at := NULL;
            NEW.pod_name := NULL;
            NEW.best_effort := false;
        ELSE
            NULL;
    END CASE;
    IF OLD.status = 'PREEMPTING' THEN
        NEW.preempted_from := NULL;
        IF NEW.status IN ('RUNNING', 'ADMITTED') THEN
            NEW.preempted_by := NULL;
        END IF;
    END IF;
    IF NEW.status IN ('SUCCEEDED', 'FAILED', 'CANCELLED') THEN
        NEW.finished_at := coalesce(NEW.finished_at, clock_timestamp());
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER jobs_before_update BEFORE UPDATE OF status ON jobs
FOR EACH ROW EXECUTE FUNCTION qf_jobs_before_update();

CREATE FUNCTION qf_jobs_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, from_status, to_status, reason, actor, attempt, pool, gpu, cpu)
    SELECT n.id, NULL, n.status, coalesce(n.status_reason, 'submitted'), n.status_actor,
           n.attempt, n.pool, n.required_gpu, n.required_cpu
    FROM new_rows n;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_after_insert AFTER INSERT ON jobs
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION qf_jobs_after_insert();

-- One job's effect on the counters within a statement.
CREATE TYPE qf_usage_change AS (
    pool text, project_id uuid, gpu int, cpu int,
    direction int,     -- +1 entering an active state, -1 leaving it
    transfer_to uuid   -- set: the capacity goes to this active preemption, not back to the pool
);

-- History and accounting of every transition of a statement, set-based.
CREATE FUNCTION qf_jobs_after_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changes qf_usage_change[];
    over record;
BEGIN
    SELECT array_agg(ROW(
               n.pool, n.project_id, n.required_gpu, n.required_cpu,
               qf_status_active(n.status)::int - qf_status_active(o.status)::int,
               -- A victim leaving PREEMPTING hands its capacity to the preemptor's saga instead
               -- of to the pool, while that saga is active.
               CASE WHEN o.status = 'PREEMPTING' AND NOT qf_status_active(n.status) THEN
                   (SELECT p.id FROM preemptions p
                    WHERE p.preemptor_id = o.preempted_by AND p.status = 'ACTIVE'
                      AND p.pool = n.pool)
               END)::qf_usage_change)
    INTO changes
    FROM new_rows n JOIN old_rows o USING (id)
    WHERE qf_status_active(n.status) IS DISTINCT FROM qf_status_active(o.status);

    -- Lock order everywhere: pools, then project_usage by project_id, then preemptions.
    UPDATE pools p
    SET gpu_in_use = p.gpu_in_use + d.gpu, cpu_in_use = p.cpu_in_use + d.cpu, updated_at = now()
    FROM (SELECT c.pool, sum(c.direction * c.gpu) AS gpu, sum(c.direction * c.cpu) AS cpu
          FROM unnest(changes) c WHERE c.transfer_to IS NULL GROUP BY c.pool) d
    WHERE p.name = d.pool AND (d.gpu <> 0 OR d.cpu <> 0);

    -- The hard bound (DESIGN §4.1). Only admissions add usage, so only a pool that gained usage
    -- here is checked: lowering a capacity below what runs is allowed and simply admits nothing
    -- until usage drops.
    SELECT p.name, p.gpu_in_use, p.gpu_capacity, p.cpu_in_use, p.cpu_capacity INTO over
    FROM pools p
    WHERE p.name IN (SELECT c.pool FROM unnest(changes) c WHERE c.direction > 0)
      AND (p.gpu_in_use > p.gpu_capacity OR p.cpu_in_use > p.cpu_capacity)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pool % capacity exceeded: GPU %/% CPU %/%', over.name,
            over.gpu_in_use, over.gpu_capacity, over.cpu_in_use, over.cpu_capacity
            USING ERRCODE = 'QF002';
    END IF;

    -- Events are written after the pool lock is held: a pool's events ordered by `at` are then
    -- in the order its usage really changed.
    INSERT INTO job_events (job_id, from_status, to_status, reason, actor, attempt, pool, gpu, cpu)
    SELECT n.id, o.status, n.status, n.status_reason, n.status_actor, n.attempt, n.pool,
           n.required_gpu, n.required_cpu
    FROM new_rows n JOIN old_rows o USING (id)
    WHERE n.status IS DISTINCT FROM o.status;

    IF changes IS NULL THEN
        RETURN NULL;
    END IF;

    PERFORM 1 FROM project_usage
    WHERE project_id IN (SELECT unnest(qf_path_ids(pr.path))
                         FROM unnest(changes) c JOIN projects pr ON pr.p_id = c.project_id)
    ORDER BY project_id FOR UPDATE;

    UPDATE project_usage u
    SET gpu_in_use = u.gpu_in_use + d.gpu, cpu_in_use = u.cpu_in_use + d.cpu
    FROM (SELECT anc AS project_id, sum(c.direction * c.gpu) AS gpu,
                 sum(c.direction * c.cpu) AS cpu
          FROM unnest(changes) c
          JOIN projects pr ON pr.p_id = c.project_id
          CROSS JOIN LATERAL unnest(qf_path_ids(pr.path)) AS anc
          GROUP BY anc) d
    WHERE u.project_id = d.project_id AND (d.gpu <> 0 OR d.cpu <> 0);

    UPDATE preemptions p
    SET held_gpu = p.held_gpu + d.gpu, held_cpu = p.held_cpu + d.cpu
    FROM (SELECT c.transfer_to, sum(c.gpu) AS gpu, sum(c.cpu) AS cpu
          FROM unnest(changes) c WHERE c.transfer_to IS NOT NULL GROUP BY c.transfer_to) d
    WHERE p.id = d.transfer_to;

    RETURN NULL;
END $$;

CREATE TRIGGER jobs_after_update AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION qf_jobs_after_update();
