-- Spec 002, webhook hardening (issues 10 and 11).
--
-- * The HMAC covers the body only: a delivery is now also a duplicate when its (shop, topic, body)
--   was seen before, whatever its X-Shopify-Event-Id (body_hash = sha256(shop \n topic \n body),
--   computed by the receiver, storeflow.esl.transform.body_hash; the backfill below is the same).
-- * The signature is no longer kept beside the raw body (with it anyone who reads the inbox could
--   replay a delivery): cleared from the stored headers.
-- * Edits of one product within the same second (updated_at has 1 s resolution) are ordered by
--   X-Shopify-Triggered-At, then by the event id, instead of by arrival.
-- * The receiver sends dedupe_key (event id, else webhook id, hashed when long; null for a delivery
--   refused for its topic) in meta; esl_ingest_webhook keeps its signature.

ALTER TABLE webhook_inbox ADD COLUMN IF NOT EXISTS body_hash bytea;
UPDATE webhook_inbox SET headers = headers - 'x-shopify-hmac-sha256' WHERE headers ? 'x-shopify-hmac-sha256';
UPDATE webhook_inbox
   SET body_hash = sha256(convert_to(shop_domain || E'\n' || topic || E'\n', 'UTF8') || raw_body)
 WHERE body_hash IS NULL AND outcome <> 'duplicate';
-- not unique: rows stored before this migration may share a body; the advisory lock makes the check exact
CREATE INDEX IF NOT EXISTS webhook_inbox_body_hash ON webhook_inbox (body_hash)
    WHERE body_hash IS NOT NULL AND outcome <> 'duplicate';

ALTER TABLE products ADD COLUMN IF NOT EXISTS source_triggered_at timestamptz;
ALTER TABLE products ADD COLUMN IF NOT EXISTS source_event_id text;
ALTER TABLE inventory_levels ADD COLUMN IF NOT EXISTS source_triggered_at timestamptz;
ALTER TABLE inventory_levels ADD COLUMN IF NOT EXISTS source_event_id text;

-- Is the incoming version (n_*) not older than the stored one (s_*)? updated_at first, then
-- X-Shopify-Triggered-At, then the event id; a part unknown on either side leaves the tie to arrival order.
CREATE OR REPLACE FUNCTION esl_not_older(
    s_updated timestamptz, s_triggered timestamptz, s_event text,
    n_updated timestamptz, n_triggered timestamptz, n_event text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT s_updated IS NULL OR s_updated < n_updated
        OR (s_updated = n_updated
            AND (s_triggered IS NULL OR n_triggered IS NULL OR s_triggered < n_triggered
                 OR (s_triggered = n_triggered AND (s_event IS NULL OR n_event IS NULL OR s_event <= n_event))))
$$;

CREATE OR REPLACE FUNCTION esl_ingest_webhook(p_meta jsonb, p_raw bytea, p_kind text, p_doc jsonb)
RETURNS TABLE (inbox_id bigint, outcome text, reason text, enqueued integer)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_shop      text := lower(coalesce(p_meta->>'shop', ''));
    v_key       text := CASE WHEN p_meta ? 'dedupe_key' THEN nullif(p_meta->>'dedupe_key', '')
                             ELSE coalesce(nullif(p_meta->>'event_id', ''), nullif(p_meta->>'webhook_id', '')) END;
    v_hash      bytea := decode(nullif(p_meta->>'body_hash', ''), 'hex');
    v_triggered timestamptz := (p_meta->>'triggered_at')::timestamptz;
    v_event     text := nullif(p_meta->>'event_id', '');
    v_lock      bigint;
    v_lock2     bigint;
    v_swap      bigint;
    v_inbox     bigint;
    v_first     bigint;
    v_map       store_mappings%ROWTYPE;
    v_outcome   text;
    v_reason    text;
    v_n         integer := 0;
    v_removed   integer := 0;
    v_rows      integer := 0;
    v_invalid   integer := 0;
    v_updated   timestamptz;
    v_product   text;
    v_item      text;
    v_row       bigint;
    v_status    text;
    v_stock     bigint;
    v_old_stock bigint;
BEGIN
    -- serialise deliveries of one event and of one body so the duplicate checks below are exact;
    -- the smaller key first, so two transactions never wait for each other crosswise
    v_lock := CASE WHEN v_key IS NOT NULL THEN hashtextextended(v_shop || '/' || v_key, 2002) END;
    v_lock2 := CASE WHEN v_hash IS NOT NULL THEN ('x' || encode(substring(v_hash FROM 1 FOR 8), 'hex'))::bit(64)::bigint END;
    IF v_lock IS NULL OR v_lock2 < v_lock THEN
        v_swap := v_lock;
        v_lock := v_lock2;
        v_lock2 := v_swap;
    END IF;
    IF v_lock IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(v_lock);
    END IF;
    IF v_lock2 IS NOT NULL AND v_lock2 <> v_lock THEN
        PERFORM pg_advisory_xact_lock(v_lock2);
    END IF;
    IF v_key IS NOT NULL THEN
        SELECT w.id INTO v_first FROM webhook_inbox w
        WHERE w.shop_domain = v_shop AND w.dedupe_key = v_key AND w.outcome <> 'duplicate';
    END IF;
    IF v_first IS NULL AND v_hash IS NOT NULL THEN
        SELECT w.id INTO v_first FROM webhook_inbox w
        WHERE w.body_hash = v_hash AND w.outcome <> 'duplicate' LIMIT 1;
    END IF;
    v_inbox := nextval('webhook_inbox_id_seq');

    IF v_first IS NOT NULL THEN
        v_outcome := 'duplicate';
        v_reason := format('already received as inbox #%s', v_first);
    ELSE
        SELECT * INTO v_map FROM store_mappings m
        WHERE m.source_system = 'shopify' AND m.source_store_id = v_shop AND m.is_active;
        IF NOT FOUND THEN
            v_outcome := 'ignored';
            v_reason := format('no active store mapping for shop %s', v_shop);
        ELSIF p_kind = 'invalid' THEN
            v_outcome := 'invalid';
            v_reason := p_doc->>'reason';
        ELSIF p_kind = 'product' THEN
            v_product := p_doc->>'product_id';
            v_updated := (p_doc->>'updated_at')::timestamptz;
            IF EXISTS (SELECT 1 FROM product_tombstones t WHERE t.source_system = 'shopify'
                       AND t.source_store_id = v_shop AND t.source_id = v_product) THEN
                v_outcome := 'stale';
                v_reason := format('product %s was deleted', v_product);
            ELSE
                WITH incoming AS (
                    SELECT v.*,
                           (SELECT c.value
                              FROM unnest(v_map.pc_fallback) WITH ORDINALITY AS f(name, ord)
                              CROSS JOIN LATERAL (SELECT nullif(btrim(v.candidates->>f.name), '') AS value) c
                             WHERE c.value IS NOT NULL
                             ORDER BY f.ord LIMIT 1) AS pc
                    FROM jsonb_to_recordset(p_doc->'variants') AS v(
                        variant_id text, inventory_item_id text, barcode text, sku text, pn text, pp text,
                        pi text, pim text, candidates jsonb, errors text)
                ), checked AS (
                    SELECT i.*,
                           nullif(concat_ws('; ', i.errors, CASE WHEN i.pc IS NULL THEN
                               format('pc: no product code (%s all empty)', array_to_string(v_map.pc_fallback, ', '))
                           END), '') AS problems
                    FROM incoming i
                ), up AS (
                    -- ON CONFLICT locks the stored row and its SET sees the stored values: `label_changed`
                    -- says whether anything a label shows changed, without a race against a concurrent update
                    INSERT INTO products AS p (
                        store_mapping_id, source_store_id, source_id, source_variant_id, inventory_item_id,
                        barcode, sku, pc, pn, pp, pi, pim, stock, status, validation_errors, source_updated_at,
                        source_triggered_at, source_event_id, label_changed)
                    SELECT v_map.id, v_shop, v_product, c.variant_id, c.inventory_item_id,
                           c.barcode, c.sku, c.pc, c.pn, c.pp, c.pi, c.pim,
                           (SELECT sum(l.available) FROM inventory_levels l
                             WHERE l.source_store_id = v_shop AND l.inventory_item_id = c.inventory_item_id),
                           CASE WHEN c.problems IS NULL THEN 'valid' ELSE 'invalid' END, c.problems, v_updated,
                           v_triggered, v_event, true
                    FROM checked c
                    ON CONFLICT (source_system, source_store_id, source_variant_id) DO UPDATE SET
                        label_changed = (p.pc, p.pn, p.pp, p.pi, p.pim, p.status, p.store_mapping_id)
                            IS DISTINCT FROM (EXCLUDED.pc, EXCLUDED.pn, EXCLUDED.pp, EXCLUDED.pi, EXCLUDED.pim,
                                              EXCLUDED.status, EXCLUDED.store_mapping_id),
                        store_mapping_id = EXCLUDED.store_mapping_id,
                        source_id = EXCLUDED.source_id,
                        inventory_item_id = EXCLUDED.inventory_item_id,
                        barcode = EXCLUDED.barcode, sku = EXCLUDED.sku,
                        pc = EXCLUDED.pc, pn = EXCLUDED.pn, pp = EXCLUDED.pp, pi = EXCLUDED.pi, pim = EXCLUDED.pim,
                        stock = coalesce(EXCLUDED.stock, p.stock),
                        status = EXCLUDED.status,
                        validation_errors = EXCLUDED.validation_errors,
                        source_updated_at = EXCLUDED.source_updated_at,
                        source_triggered_at = EXCLUDED.source_triggered_at,
                        source_event_id = EXCLUDED.source_event_id,
                        deleted_at = NULL,
                        updated_at = now()
                    WHERE esl_not_older(p.source_updated_at, p.source_triggered_at, p.source_event_id,
                                        EXCLUDED.source_updated_at, EXCLUDED.source_triggered_at,
                                        EXCLUDED.source_event_id)
                    RETURNING p.id, p.status, p.pc, p.validation_errors, p.inventory_item_id, p.source_variant_id,
                              p.label_changed
                ), gone AS (
                    -- variants missing from a newer payload leave the labels too
                    UPDATE products p SET status = 'deleted', deleted_at = now(), updated_at = now(),
                                          source_updated_at = v_updated, source_triggered_at = v_triggered,
                                          source_event_id = v_event
                    WHERE p.source_id = v_product AND p.source_system = 'shopify' AND p.source_store_id = v_shop
                      AND p.status <> 'deleted'
                      AND NOT (p.source_variant_id = ANY (SELECT c.variant_id FROM checked c))
                      AND esl_not_older(p.source_updated_at, p.source_triggered_at, p.source_event_id,
                                        v_updated, v_triggered, v_event)
                      AND EXISTS (SELECT 1 FROM up)
                    RETURNING p.id
                ), queued AS (
                    INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, inbox_id)
                    SELECT v_map.id, v_map.hipoink_store_code, u.id, 'upsert', v_inbox
                    FROM up u WHERE u.status = 'valid' AND u.label_changed
                    UNION ALL
                    SELECT v_map.id, v_map.hipoink_store_code, g.id, 'delete', v_inbox FROM gone g
                    RETURNING operation
                ), rejected AS (
                    INSERT INTO sync_log (inbox_id, store_code, product_id, product_code, operation, attempt, status, error)
                    SELECT v_inbox, v_map.hipoink_store_code, u.id, u.pc, 'upsert', 0, 'invalid', u.validation_errors
                    FROM up u WHERE u.status = 'invalid' AND u.label_changed
                    RETURNING 1
                ), mapped AS (
                    INSERT INTO inventory_item_map (source_store_id, inventory_item_id, product_row_id, source_variant_id)
                    SELECT v_shop, u.inventory_item_id, u.id, u.source_variant_id
                    FROM up u WHERE u.inventory_item_id IS NOT NULL
                    ON CONFLICT (source_store_id, inventory_item_id) DO UPDATE SET
                        product_row_id = EXCLUDED.product_row_id,
                        source_variant_id = EXCLUDED.source_variant_id,
                        updated_at = now()
                    WHERE (inventory_item_map.product_row_id, inventory_item_map.source_variant_id)
                          IS DISTINCT FROM (EXCLUDED.product_row_id, EXCLUDED.source_variant_id)
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM up), (SELECT count(*) FROM queued),
                       (SELECT count(*) FROM queued q WHERE q.operation = 'delete'), (SELECT count(*) FROM rejected)
                  INTO v_rows, v_n, v_removed, v_invalid;

                IF v_rows = 0 THEN
                    v_outcome := 'stale';
                    v_reason := format('older than the stored product %s (updated_at %s)', v_product, v_updated);
                ELSIF v_n > 0 THEN
                    v_outcome := 'enqueued';
                    v_reason := nullif(concat_ws('; ',
                        CASE WHEN v_invalid > 0 THEN format('%s variant(s) invalid, see sync_log', v_invalid) END,
                        CASE WHEN v_removed > 0 THEN format('%s variant(s) removed', v_removed) END), '');
                ELSIF v_invalid > 0 THEN
                    v_outcome := 'invalid';
                    v_reason := format('%s variant(s) invalid, see sync_log', v_invalid);
                ELSE
                    v_outcome := 'unchanged';
                    v_reason := 'no label field changed';
                END IF;
            END IF;
        ELSIF p_kind = 'delete' THEN
            v_product := p_doc->>'product_id';
            INSERT INTO product_tombstones (source_store_id, source_id) VALUES (v_shop, v_product)
            ON CONFLICT DO NOTHING;
            WITH gone AS (
                UPDATE products p SET status = 'deleted', deleted_at = now(), updated_at = now()
                WHERE p.source_system = 'shopify' AND p.source_store_id = v_shop AND p.source_id = v_product
                  AND p.status <> 'deleted'
                RETURNING p.id
            )
            INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, inbox_id)
            SELECT v_map.id, v_map.hipoink_store_code, g.id, 'delete', v_inbox FROM gone g;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            IF v_n > 0 THEN
                v_outcome := 'enqueued';
            ELSE
                v_outcome := 'stored';
                v_reason := format('product %s has no stored variants; tombstone kept', v_product);
            END IF;
        ELSIF p_kind = 'inventory' THEN
            v_item := p_doc->>'inventory_item_id';
            v_updated := (p_doc->>'updated_at')::timestamptz;
            INSERT INTO inventory_levels AS l (source_store_id, inventory_item_id, location_id, available,
                                               source_updated_at, source_triggered_at, source_event_id)
            VALUES (v_shop, v_item, p_doc->>'location_id', (p_doc->>'available')::bigint, v_updated,
                    v_triggered, v_event)
            ON CONFLICT (source_store_id, inventory_item_id, location_id) DO UPDATE SET
                available = EXCLUDED.available, source_updated_at = EXCLUDED.source_updated_at,
                source_triggered_at = EXCLUDED.source_triggered_at, source_event_id = EXCLUDED.source_event_id,
                updated_at = now()
            WHERE l.source_updated_at IS NULL OR EXCLUDED.source_updated_at IS NULL
               OR esl_not_older(l.source_updated_at, l.source_triggered_at, l.source_event_id,
                                EXCLUDED.source_updated_at, EXCLUDED.source_triggered_at, EXCLUDED.source_event_id);
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            SELECT m.product_row_id INTO v_row FROM inventory_item_map m
            WHERE m.source_store_id = v_shop AND m.inventory_item_id = v_item;
            IF v_rows = 0 THEN
                v_outcome := 'stale';
                v_reason := format('older than the stored level of inventory item %s', v_item);
            ELSIF v_row IS NULL THEN
                v_outcome := 'unmatched';
                v_reason := format('inventory item %s is not mapped to a known variant (level kept)', v_item);
            ELSE
                SELECT sum(l.available) INTO v_stock FROM inventory_levels l
                WHERE l.source_store_id = v_shop AND l.inventory_item_id = v_item;
                SELECT p.stock, p.status INTO v_old_stock, v_status FROM products p WHERE p.id = v_row FOR UPDATE;
                UPDATE products p SET stock = v_stock, updated_at = now() WHERE p.id = v_row;
                IF v_map.stock_field IS NULL THEN
                    v_outcome := 'stored';
                    v_reason := 'the store mapping names no Hipoink stock field';
                ELSIF v_status <> 'valid' THEN
                    v_outcome := 'stored';
                    v_reason := format('variant is %s', v_status);
                ELSIF v_old_stock IS NOT DISTINCT FROM v_stock THEN
                    v_outcome := 'unchanged';
                    v_reason := 'stock unchanged';
                ELSE
                    INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, inbox_id)
                    VALUES (v_map.id, v_map.hipoink_store_code, v_row, 'upsert', v_inbox);
                    v_n := 1;
                    v_outcome := 'enqueued';
                END IF;
            END IF;
        ELSE
            v_outcome := 'invalid';
            v_reason := format('unknown kind %s', p_kind);
        END IF;
    END IF;

    INSERT INTO webhook_inbox (id, shop_domain, topic, event_id, webhook_id, dedupe_key, triggered_at, api_version,
                               outcome, reason, items_enqueued, store_mapping_id, raw_body, headers, body_hash)
    VALUES (v_inbox, v_shop, coalesce(p_meta->>'topic', ''), v_event,
            nullif(p_meta->>'webhook_id', ''), v_key, v_triggered, p_meta->>'api_version',
            v_outcome, v_reason, v_n, v_map.id, p_raw,
            coalesce(p_meta->'headers', '{}'::jsonb) - 'x-shopify-hmac-sha256', v_hash);
    RETURN QUERY SELECT v_inbox, v_outcome, v_reason, v_n;
END
$fn$;
