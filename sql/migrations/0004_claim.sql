-- The claim (DESIGN §4): admit pending jobs of one pool in queue order.
--
-- Called as one statement, `SELECT * FROM qf_claim_jobs(...)`, by any number of claimers at once:
--   1. The pool row is locked first. It is the capacity semaphore: claimers of one pool take
--      turns, and the free capacity read from it is current, not a snapshot.
--   2. Pending jobs are read a page at a time in queue order (`jobs_claim_order`) with
--      FOR UPDATE SKIP LOCKED: a job another transaction holds (a cancel, a preemption saga) is
--      skipped, never waited for, and no job can be admitted by two claimers.
--   3. The usage rows of every ancestor of the page's projects are locked in one global order
--      (project_id), so the quota room read next is current too, and claimers of different pools
--      sharing a subtree cannot deadlock on a page.
--   4. Each job in order: skipped if any covering plan on its path lacks room (a job over quota
--      does not block other projects); admitted if it fits the pool; if an in-quota job does not
--      fit the pool, the claim stops there and reports it `blocked` — the free capacity is kept
--      for it, so a large high-priority job is never starved by a stream of small ones, and the
--      dispatcher may start a preemption for it. A best-effort job (no covering plan anywhere on
--      its path) only takes idle capacity and reserves nothing.
--   5. One UPDATE moves the chosen jobs to ADMITTED; the jobs triggers write their events and
--      re-check the pool bound.

CREATE FUNCTION qf_claim_jobs(
    p_pool   text,
    p_limit  integer,
    p_sow    integer,
    p_actor  text        DEFAULT 'dispatcher',
    p_now    timestamptz DEFAULT now()
) RETURNS TABLE (job_id uuid, outcome text, best_effort boolean)
LANGUAGE plpgsql AS $$
DECLARE
    free_gpu     integer;
    free_cpu     integer;
    page_size    integer := least(greatest(p_limit * 2, 8), 1000);
    page_ids     uuid[];
    page_prio    integer[];
    page_created timestamptz[];
    after_prio    integer;
    after_created timestamptz;
    after_id      uuid;
    -- quota room per covering plan ("<project id>:<GPU|CPU>"), spent as this claim admits
    room_keys    text[] := '{}';
    room_left    integer[] := '{}';
    admitted     uuid[] := '{}';
    admitted_be  boolean[] := '{}';
    blocked_id   uuid;
    cand         record;
    k            integer;
    i            integer;
    in_quota     boolean;
BEGIN
    IF p_limit < 1 THEN
        RAISE EXCEPTION 'claim limit must be at least 1, got %', p_limit USING ERRCODE = '22023';
    END IF;

    -- 1. capacity semaphore
    SELECT gpu_capacity - gpu_in_use, cpu_capacity - cpu_in_use INTO free_gpu, free_cpu
    FROM pools WHERE name = p_pool FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown pool %', p_pool USING ERRCODE = 'QF004';
    END IF;

    <<pages>>
    LOOP
        -- 2. next page in queue order, keyset-paginated after the previous page
        SELECT array_agg(s.id ORDER BY s.priority_value DESC, s.created_at, s.id),
               array_agg(s.priority_value ORDER BY s.priority_value DESC, s.created_at, s.id),
               array_agg(s.created_at ORDER BY s.priority_value DESC, s.created_at, s.id)
        INTO page_ids, page_prio, page_created
        FROM (
            SELECT j.id, j.priority_value, j.created_at
            FROM jobs j
            WHERE j.pool = p_pool
              AND j.status = 'PENDING'
              AND (j.not_before IS NULL OR j.not_before <= p_now)
              AND (after_id IS NULL
                   OR j.priority_value < after_prio
                   OR (j.priority_value = after_prio AND (j.created_at, j.id) > (after_created, after_id)))
              -- a preemptor waits for its own saga, which admits it
              AND NOT EXISTS (SELECT 1 FROM preemptions pr
                              WHERE pr.preemptor_id = j.id AND pr.status = 'ACTIVE')
            ORDER BY j.priority_value DESC, j.created_at, j.id
            LIMIT page_size
            FOR UPDATE OF j SKIP LOCKED
        ) s;
        EXIT pages WHEN page_ids IS NULL;

        -- 3. current quota usage along every path of the page, locked in one global order
        PERFORM 1 FROM project_usage
        WHERE project_id IN (SELECT unnest(qf_path_ids(p.path))
                             FROM jobs j JOIN projects p ON p.p_id = j.project_id
                             WHERE j.id = ANY (page_ids))
        ORDER BY project_id
        FOR UPDATE;

        -- 4. decide in queue order
        FOR cand IN
            SELECT c.ord, c.id, j.required_gpu AS gpu, j.required_cpu AS cpu,
                   coalesce(array_agg(l.key ORDER BY l.key) FILTER (WHERE l.key IS NOT NULL), '{}') AS keys,
                   coalesce(array_agg(l.amount ORDER BY l.key) FILTER (WHERE l.key IS NOT NULL), '{}') AS amounts,
                   coalesce(array_agg(l.room ORDER BY l.key) FILTER (WHERE l.key IS NOT NULL), '{}') AS rooms
            FROM unnest(page_ids) WITH ORDINALITY AS c(id, ord)
            JOIN jobs j ON j.id = c.id
            JOIN projects p ON p.p_id = j.project_id
            -- every plan covering this instant on the job's path, for a resource the job asks for
            LEFT JOIN LATERAL (
                SELECT rp.project_id::text || ':' || rp.resource_type::text AS key,
                       CASE rp.resource_type WHEN 'GPU' THEN j.required_gpu
                                             ELSE j.required_cpu END AS amount,
                       rp.quantity - CASE rp.resource_type WHEN 'GPU' THEN u.gpu_in_use
                                                           ELSE u.cpu_in_use END AS room
                FROM resource_plans rp
                JOIN project_usage u ON u.project_id = rp.project_id
                WHERE rp.project_id = ANY (qf_path_ids(p.path))
                  AND rp.week_window @> p_sow
                  AND CASE rp.resource_type WHEN 'GPU' THEN j.required_gpu
                                            ELSE j.required_cpu END > 0
            ) l ON true
            GROUP BY c.ord, c.id, j.required_gpu, j.required_cpu
            ORDER BY c.ord
        LOOP
            in_quota := true;
            FOR i IN 1 .. cardinality(cand.keys) LOOP
                k := array_position(room_keys, cand.keys[i]);
                IF k IS NULL THEN
                    room_keys := room_keys || cand.keys[i];
                    room_left := room_left || cand.rooms[i];
                    k := cardinality(room_keys);
                END IF;
                IF cand.amounts[i] > room_left[k] THEN
                    in_quota := false;
                END IF;
            END LOOP;
            CONTINUE WHEN NOT in_quota;

            IF cand.gpu > free_gpu OR cand.cpu > free_cpu THEN
                IF cardinality(cand.keys) > 0 THEN
                    blocked_id := cand.id;
                    EXIT pages;
                END IF;
                CONTINUE;
            END IF;

            free_gpu := free_gpu - cand.gpu;
            free_cpu := free_cpu - cand.cpu;
            FOR i IN 1 .. cardinality(cand.keys) LOOP
                k := array_position(room_keys, cand.keys[i]);
                room_left[k] := room_left[k] - cand.amounts[i];
            END LOOP;
            admitted := admitted || cand.id;
            admitted_be := admitted_be || (cardinality(cand.keys) = 0);
            EXIT pages WHEN cardinality(admitted) >= p_limit;
        END LOOP;

        EXIT pages WHEN cardinality(page_ids) < page_size;
        after_prio := page_prio[cardinality(page_ids)];
        after_created := page_created[cardinality(page_ids)];
        after_id := page_ids[cardinality(page_ids)];
    END LOOP;

    -- 5. admit
    IF cardinality(admitted) > 0 THEN
        UPDATE jobs j
        SET status = 'ADMITTED',
            best_effort = a.be,
            status_reason = CASE WHEN a.be
                                 THEN 'admitted on idle capacity: no plan covers its project now'
                                 ELSE 'admitted within quota' END,
            status_actor = p_actor
        FROM unnest(admitted, admitted_be) AS a(id, be)
        WHERE j.id = a.id;
    END IF;

    RETURN QUERY
        SELECT a.id, 'admitted'::text, a.be
        FROM unnest(admitted, admitted_be) WITH ORDINALITY AS a(id, be, ord)
        ORDER BY a.ord;
    IF blocked_id IS NOT NULL THEN
        RETURN QUERY SELECT blocked_id, 'blocked'::text, false;
    END IF;
END $$;
