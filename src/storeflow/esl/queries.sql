-- The ESL pipeline's SQL, one named block per query; storeflow.esl.store loads them by name and
-- owns the functions that run them. Parameters are bound (psycopg placeholders); a percent sign
-- outside a placeholder must therefore not appear, not even in a comment.

-- name: claim
-- The lookups are written as `= ANY(ARRAY(...))` and LATERAL ... LIMIT 1 on purpose: as joins, the planner
-- hashes the whole queue and products tables on every claim once the backlog is large.
-- Its columns are the fields of storeflow.esl.store.ClaimedItem.
WITH claimed AS (
    UPDATE sync_queue q
       SET state = 'in_progress', attempts = q.attempts + 1, locked_by = %(worker)s,
           locked_until = now() + make_interval(secs => %(lease)s), claimed_at = now()
     WHERE q.id = ANY(ARRAY(
        SELECT c.id FROM sync_queue c
         WHERE c.state = 'pending' AND c.run_after <= now()
           AND NOT EXISTS (SELECT 1 FROM sync_queue b WHERE b.product_id = c.product_id AND b.state = 'in_progress')
         ORDER BY c.run_after, c.id
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED))
    RETURNING q.id, q.store_mapping_id, q.store_code, q.product_id, q.operation, q.attempts, q.inbox_id,
              q.enqueued_at, q.answered_errors, extract(epoch FROM (now() - q.retrying_since))::float8 AS retrying_for
)
SELECT c.*, p.pc, p.pn, p.pp, p.pi, p.pim, p.stock, p.product_status, p.validation_errors,
       h.sent_pc, m.stock_field, m.mapping_active
  FROM claimed c
  CROSS JOIN LATERAL (SELECT x.pc, x.pn, x.pp, x.pi, x.pim, x.stock, x.status AS product_status, x.validation_errors
                        FROM products x WHERE x.id = c.product_id LIMIT 1) p
  LEFT JOIN LATERAL (SELECT y.pc AS sent_pc FROM hipoink_products y WHERE y.product_id = c.product_id LIMIT 1) h
    ON true
  LEFT JOIN LATERAL (SELECT z.stock_field, z.is_active AS mapping_active FROM store_mappings z
                      WHERE z.id = c.store_mapping_id LIMIT 1) m ON true
 ORDER BY c.id

-- name: expired
-- Items whose worker stopped renewing their lease; the caller decides each one (decide_retry) and
-- hands the decisions to return_expired in the same transaction.
SELECT q.id, q.inbox_id, q.store_code, q.product_id, q.operation, q.attempts, q.answered_errors, q.locked_by,
       extract(epoch FROM (now() - q.retrying_since))::float8 AS retrying_for
  FROM sync_queue q
 WHERE q.state = 'in_progress' AND q.locked_until < now()
 ORDER BY q.id
 LIMIT 5000
   FOR UPDATE SKIP LOCKED

-- name: return_expired
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(id bigint, state text, error text, status text, inbox_id bigint, store_code text, product_id bigint,
             operation text, attempt int, detail text)
), moved AS (
    UPDATE sync_queue q
       SET state = r.state, run_after = now(), locked_by = NULL, locked_until = NULL, last_error = r.error,
           retrying_since = coalesce(q.retrying_since, now()),
           finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE now() END
      FROM r
     WHERE q.id = r.id AND q.state = 'in_progress' AND q.locked_until < now()
    RETURNING q.id
)
INSERT INTO sync_log (queue_item_id, inbox_id, store_code, product_id, operation, attempt, status, error, worker,
                      detail)
SELECT r.id, r.inbox_id, r.store_code, r.product_id, r.operation, r.attempt, r.status, r.error, %(worker)s, r.detail
  FROM r JOIN moved m ON m.id = r.id
RETURNING queue_item_id

-- name: heartbeat
UPDATE sync_queue SET locked_until = now() + make_interval(secs => %(lease)s)
 WHERE state = 'in_progress' AND locked_by = %(worker)s AND id = ANY(%(ids)s)

-- name: next_due
SELECT extract(epoch FROM (min(run_after) - now()))::float8 AS wait,
       (SELECT count(*) FROM sync_queue WHERE state = 'in_progress') AS in_progress
  FROM sync_queue WHERE state = 'pending'

-- name: finish
-- Per-item results travel as one jsonb document: psycopg dumps long text arrays element by element
-- in Python, which costs more than the statements themselves at a few thousand items per second.
-- One statement, so that running it again after a commit whose outcome was lost changes nothing:
-- only items this worker still holds in progress move, and only their log rows and Hipoink records
-- are written. Items it no longer holds (the lease passed and another worker took them back) are
-- sent again by whoever holds them now; Hipoink's create_multiple is an upsert by code.
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(id bigint, state text, delay float8, error text, answered int, inbox_id bigint, store_code text,
             product_id bigint, pc text, operation text, attempt int, status text, http_status int,
             error_code int, detail text, enqueued_at timestamptz, sent_at timestamptz, acked_at timestamptz,
             payload jsonb, removed boolean)
), done AS (
    UPDATE sync_queue q
       SET state = r.state,
           run_after = CASE WHEN r.state = 'pending' THEN now() + make_interval(secs => r.delay) ELSE q.run_after END,
           last_error = r.error,
           answered_errors = r.answered,
           retrying_since = CASE WHEN r.state = 'pending' THEN coalesce(q.retrying_since, now())
                                 ELSE q.retrying_since END,
           finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE now() END,
           locked_by = NULL, locked_until = NULL
      FROM r
     WHERE q.id = r.id AND q.state = 'in_progress' AND q.locked_by = %(worker)s
    RETURNING q.id
), held AS (
    SELECT r.* FROM r JOIN done d ON d.id = r.id
), logged AS (
    INSERT INTO sync_log (queue_item_id, inbox_id, store_code, product_id, product_code, operation, attempt,
                          status, error, http_status, error_code, worker, detail, enqueued_at, sent_at, acked_at,
                          latency_ms)
    SELECT h.id, h.inbox_id, h.store_code, h.product_id, h.pc, h.operation, h.attempt, h.status, h.error,
           h.http_status, h.error_code, %(worker)s, h.detail, h.enqueued_at, h.sent_at, h.acked_at,
           extract(epoch FROM (h.acked_at - h.enqueued_at)) * 1000
      FROM held h
    RETURNING 1
), remembered AS (
    INSERT INTO hipoink_products (product_id, store_code, pc, payload, synced_at)
    SELECT h.product_id, h.store_code, h.payload->>'pc', h.payload, now()
      FROM held h WHERE h.payload IS NOT NULL AND h.status = 'succeeded'
    ON CONFLICT (product_id) DO UPDATE SET store_code = EXCLUDED.store_code, pc = EXCLUDED.pc,
           payload = EXCLUDED.payload, synced_at = EXCLUDED.synced_at
    RETURNING 1
), forgotten AS (
    DELETE FROM hipoink_products p USING held h WHERE h.removed AND p.product_id = h.product_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM done) AS finished, (SELECT count(*) FROM logged) AS logged,
       (SELECT count(*) FROM remembered) AS remembered, (SELECT count(*) FROM forgotten) AS forgotten

-- name: ingest_webhooks
-- Deliveries that arrive together go to the database as one jsonb array and one statement (one
-- transaction, one commit, one round trip); each still gets its own inbox row and queue items.
SELECT r.inbox_id, r.outcome, r.reason, r.enqueued
  FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS e(x, n)
 CROSS JOIN LATERAL esl_ingest_webhook(e.x->'meta', decode(e.x->>'raw', 'base64'), e.x->>'kind', e.x->'doc') AS r
 ORDER BY e.n

-- name: state_counts_by_store
SELECT store_code, state, count(*) AS n FROM sync_queue GROUP BY 1, 2 ORDER BY 1, 2

-- name: pending_age_and_due
SELECT extract(epoch FROM (now() - min(enqueued_at)))::float8 AS age,
       count(*) FILTER (WHERE run_after <= now()) AS due
  FROM sync_queue WHERE state = 'pending'

-- name: last_errors
SELECT queue_item_id, store_code, product_code, attempt, status, error, created_at FROM sync_log
 WHERE error IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 10

-- name: inbox_outcomes_last_day
SELECT outcome, count(*) AS n FROM webhook_inbox WHERE received_at > now() - interval '24 hours'
 GROUP BY 1 ORDER BY 1

-- name: latency_last_hour
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99, count(*) AS n FROM sync_log
 WHERE status = 'succeeded' AND latency_ms IS NOT NULL AND created_at > now() - interval '1 hour'

-- name: retry_dead_letters
WITH again AS (
    UPDATE sync_queue
       SET state = 'pending', attempts = 0, run_after = now(), locked_by = NULL, locked_until = NULL,
           finished_at = NULL, reason = 'retry', answered_errors = 0, retrying_since = NULL
     WHERE state IN ('failed', 'dead')
       AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
       AND (%(store)s::text IS NULL OR store_code = %(store)s::text)
    RETURNING id, store_code
), woken AS (
    SELECT pg_notify(%(channel)s, s.store_code) FROM (SELECT DISTINCT store_code FROM again) s
)
SELECT (SELECT count(*) FROM again) AS n, (SELECT count(*) FROM woken) AS stores

-- name: dead_letters
SELECT q.id, q.store_code, q.state, q.attempts, q.operation, p.pc, q.last_error, q.finished_at
  FROM sync_queue q JOIN products p ON p.id = q.product_id
 WHERE q.state IN ('failed', 'dead') AND (%(store)s::text IS NULL OR q.store_code = %(store)s::text)
 ORDER BY q.id DESC LIMIT %(limit)s

-- name: store_code_known
SELECT 1 FROM store_mappings WHERE hipoink_store_code = %s

-- name: enqueue_resync
WITH up AS (
    INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
    SELECT m.id, m.hipoink_store_code, p.id, 'upsert', 'resync'
      FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
     WHERE m.hipoink_store_code = %(store)s AND m.is_active AND p.status = 'valid'
    RETURNING 1
), gone AS (
    INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
    SELECT m.id, m.hipoink_store_code, p.id, 'delete', 'resync'
      FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
      JOIN hipoink_products h ON h.product_id = p.id
     WHERE m.hipoink_store_code = %(store)s AND m.is_active AND p.status = 'deleted'
    RETURNING 1
), woken AS (SELECT pg_notify(%(channel)s, %(store)s))
SELECT (SELECT count(*) FROM up) AS upserts, (SELECT count(*) FROM gone) AS deletes,
       (SELECT count(*) FROM woken) AS woken,
       (SELECT count(*) FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
         WHERE m.hipoink_store_code = %(store)s AND p.status = 'invalid') AS invalid

-- name: valid_products_of_store
SELECT count(*) AS n FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
 WHERE m.hipoink_store_code = %s AND p.status = 'valid'

-- name: invalid_log_rows_of_store
SELECT count(*) AS n FROM sync_log WHERE status = 'invalid' AND store_code = %s

-- name: store_rate_limits
SELECT hipoink_store_code AS store, min(hipoink_rate_limit_per_second) AS rate
  FROM store_mappings
 WHERE hipoink_rate_limit_per_second IS NOT NULL
 GROUP BY hipoink_store_code

-- name: notify_workers
SELECT pg_notify(%s, '')

-- name: ping
SELECT 1

-- name: find_mapping
SELECT id, source_system, source_store_id, hipoink_store_code, is_active, pc_fallback, stock_field,
       created_at, updated_at
  FROM store_mappings WHERE source_store_id = %s OR hipoink_store_code = %s
 ORDER BY is_active DESC, id LIMIT 1

-- name: active_mapping
SELECT id, hipoink_store_code FROM store_mappings
 WHERE source_system = 'shopify' AND source_store_id = %s AND is_active

-- name: record_subscription_check
INSERT INTO webhook_subscription_checks (shop_domain, action, expected, present, missing, created, deleted,
                                         reconcile_run_id, error)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)

-- name: stored_variants
SELECT source_id, source_variant_id, inventory_item_id, barcode, sku, pn, pp, pim, status, source_updated_at
  FROM products
 WHERE source_system = 'shopify' AND source_store_id = %(shop)s
   AND (%(ids)s::text[] IS NULL OR source_id = ANY(%(ids)s::text[]))

-- name: deactivate_product
-- ARCHIVED / DRAFT products under the `remove` rule: the ingest function has no status, so their
-- variants are marked deleted here, under the same newer-wins rule, and enqueued as deletes
WITH gone AS (
    UPDATE products p SET status = 'deleted', deleted_at = now(), updated_at = now(),
                          source_updated_at = %(updated_at)s
     WHERE p.source_system = 'shopify' AND p.source_store_id = %(shop)s AND p.source_id = %(product)s
       AND p.status <> 'deleted'
       AND (p.source_updated_at IS NULL OR p.source_updated_at <= %(updated_at)s)
    RETURNING p.id
)
INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
SELECT m.id, m.hipoink_store_code, g.id, 'delete', 'reconcile'
  FROM gone g CROSS JOIN store_mappings m WHERE m.id = %(mapping)s

-- name: mark_reconciled
UPDATE sync_queue SET reason = 'reconcile' WHERE inbox_id = ANY(%s)

-- name: last_high_water
SELECT high_water FROM reconcile_runs WHERE shop_domain = %s AND status = 'succeeded'
   AND high_water IS NOT NULL ORDER BY id DESC LIMIT 1

-- name: newest_stored
SELECT max(source_updated_at) AS t FROM products WHERE source_system = 'shopify' AND source_store_id = %s

-- name: last_webhook_at
SELECT max(received_at) AS t FROM webhook_inbox WHERE shop_domain = %s AND NOT (headers ? %s)

-- name: start_reconcile_run
INSERT INTO reconcile_runs (shop_domain, store_mapping_id, mode, trigger, since)
VALUES (%s, %s, %s, %s, %s) RETURNING id

-- name: finish_reconcile_run
UPDATE reconcile_runs SET finished_at = now(), status = %(status)s, method = %(method)s,
       snapshot_at = %(snapshot_at)s, high_water = %(high_water)s, pages = %(pages)s,
       requests = %(requests)s, cost_used = %(cost_used)s, throttled_retries = %(throttled_retries)s,
       products_seen = %(products_seen)s, created = %(created)s, updated = %(updated)s,
       deleted = %(deleted)s, unchanged = %(unchanged)s, skipped_newer = %(skipped_newer)s,
       enqueued = %(enqueued)s, error = %(error)s
 WHERE id = %(run_id)s

-- name: shop_overview
SELECT m.source_store_id AS shop, m.hipoink_store_code AS store,
       (SELECT max(w.received_at) FROM webhook_inbox w
         WHERE w.shop_domain = m.source_store_id AND NOT (w.headers ? %(source)s)) AS last_webhook_at,
       c.checked_at AS subscriptions_checked_at, c.expected AS subscriptions_expected,
       c.present AS subscriptions_present, c.missing AS subscriptions_missing,
       c.created AS subscriptions_created,
       r.id AS last_run_id, r.mode AS last_run_mode, r.status AS last_run_status, r.finished_at AS last_run_at,
       r.created AS last_run_created, r.updated AS last_run_updated, r.deleted AS last_run_deleted,
       r.unchanged AS last_run_unchanged, r.error AS last_run_error
  FROM store_mappings m
  LEFT JOIN LATERAL (SELECT * FROM webhook_subscription_checks k WHERE k.shop_domain = m.source_store_id
                      ORDER BY k.id DESC LIMIT 1) c ON true
  LEFT JOIN LATERAL (SELECT * FROM reconcile_runs x WHERE x.shop_domain = m.source_store_id
                      ORDER BY x.id DESC LIMIT 1) r ON true
 WHERE m.source_system = 'shopify' AND m.is_active
 ORDER BY m.source_store_id

-- name: queue_by_mapping
SELECT m.id AS mapping_id, m.hipoink_store_code AS code, m.source_store_id AS shop,
       count(q.id) FILTER (WHERE q.state IN ('pending', 'in_progress')) AS pending,
       count(q.id) FILTER (WHERE q.state IN ('failed', 'dead')) AS dead,
       extract(epoch FROM %(now)s - min(q.enqueued_at) FILTER (WHERE q.state IN ('pending', 'in_progress')))
           AS oldest_pending_age,
       max(q.finished_at) FILTER (WHERE q.state = 'succeeded') AS last_success_at
FROM store_mappings m LEFT JOIN sync_queue q ON q.store_mapping_id = m.id
WHERE m.is_active OR q.id IS NOT NULL
GROUP BY m.id, m.hipoink_store_code, m.source_store_id
ORDER BY m.hipoink_store_code, m.source_store_id

-- name: state_counts
SELECT state, count(*) AS n FROM sync_queue GROUP BY state

-- name: oldest_waiting_age
SELECT extract(epoch FROM %s - min(enqueued_at)) AS age FROM sync_queue WHERE state IN ('pending', 'in_progress')

-- name: states_with_age
SELECT state, count(*) AS n, extract(epoch FROM %s - min(enqueued_at)) AS age FROM sync_queue GROUP BY state

-- name: recent_dead_letters
SELECT q.id, q.store_code AS store, q.state, q.operation, p.pc, p.pn, q.attempts, q.last_error, q.finished_at
FROM sync_queue q LEFT JOIN products p ON p.id = q.product_id
WHERE q.state IN ('failed', 'dead') ORDER BY q.finished_at DESC NULLS LAST, q.id DESC LIMIT 100

-- name: recent_webhooks
SELECT id, shop_domain, topic, event_id, received_at, outcome, reason, items_enqueued FROM webhook_inbox
ORDER BY received_at DESC, id DESC LIMIT 25

-- name: webhook_outcomes
SELECT outcome, count(*) AS n FROM webhook_inbox GROUP BY outcome ORDER BY outcome

-- name: webhook_reasons
-- reasons name ids and timestamps ("already received as inbox #79"): grouped with digits folded to "#"
SELECT outcome, regexp_replace(coalesce(reason, ''), '#?[0-9][0-9:T.+-]*', '#', 'g') AS reason, count(*) AS n,
       max(received_at) AS last_at, max(reason) AS example
FROM webhook_inbox WHERE outcome = ANY(%s) GROUP BY 1, 2 ORDER BY n DESC, last_at DESC LIMIT 20

-- name: webhooks_by_topic
-- reason kinds, not raw reasons (those carry ids), folded as in webhook_reasons
SELECT CASE WHEN topic = ANY(%s) THEN topic ELSE 'other' END AS topic, outcome,
       regexp_replace(coalesce(reason, ''), '#?[0-9][0-9:T.+-]*', '#', 'g') AS reason, count(*) AS n
FROM webhook_inbox GROUP BY 1, 2, 3

-- name: synced_per_hour
SELECT date_trunc('hour', created_at) AS hour, count(*) AS n FROM sync_log
WHERE status = 'succeeded' AND created_at >= %s GROUP BY 1 ORDER BY 1

-- name: sync_attempts
SELECT store_code, status, count(*) AS n FROM sync_log GROUP BY 1, 2
