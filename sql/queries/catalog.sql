-- priority_class_insert --
-- A new priority class.
INSERT INTO priority_classes (name, value, preemption_policy, global_default,
                              min_runtime_seconds, description)
VALUES (%(name)s, %(value)s, %(preemption_policy)s, %(global_default)s,
        %(min_runtime_seconds)s, %(description)s)
RETURNING name, value, preemption_policy, global_default, min_runtime_seconds, description

-- priority_class_list --
-- Every priority class, highest first.
SELECT name, value, preemption_policy, global_default, min_runtime_seconds, description
FROM priority_classes ORDER BY value DESC, name

-- priority_class_get --
-- One class by name, or the global default when the name is NULL.
SELECT name, value, preemption_policy, global_default, min_runtime_seconds, description
FROM priority_classes
WHERE (%(name)s::text IS NOT NULL AND name = %(name)s)
   OR (%(name)s::text IS NULL AND global_default)

-- pool_upsert --
-- Create a pool or change its capacity. Lowering it below what runs is allowed: running jobs
-- keep running and nothing is admitted until usage drops under the new capacity.
INSERT INTO pools (name, gpu_capacity, cpu_capacity)
VALUES (%(name)s, %(gpu_capacity)s, %(cpu_capacity)s)
ON CONFLICT (name) DO UPDATE
SET gpu_capacity = EXCLUDED.gpu_capacity, cpu_capacity = EXCLUDED.cpu_capacity,
    updated_at = now()
RETURNING name, gpu_capacity, cpu_capacity, gpu_in_use, cpu_in_use

-- pool_get --
-- One pool with its usage.
SELECT name, gpu_capacity, cpu_capacity, gpu_in_use, cpu_in_use FROM pools WHERE name = %(name)s

-- pool_list --
-- Every pool with its usage.
SELECT name, gpu_capacity, cpu_capacity, gpu_in_use, cpu_in_use FROM pools ORDER BY name

-- pool_lock --
-- Take a pool's capacity semaphore for this transaction and read its current free capacity.
SELECT name, gpu_capacity, cpu_capacity, gpu_in_use, cpu_in_use,
       gpu_capacity - gpu_in_use AS free_gpu, cpu_capacity - cpu_in_use AS free_cpu
FROM pools WHERE name = %(name)s FOR UPDATE
