-- Spec 002: the webhook request path as one server-side call (one round trip, one transaction).
--
-- esl_ingest_webhook(meta, raw_body, kind, doc) records the delivery in webhook_inbox, applies it
-- to products / inventory (newer updated_at wins), enqueues sync_queue items, writes sync_log rows
-- for variants that fail validation; the caller commits before answering 2xx, then wakes the workers
-- (NOTIFY esl_sync) outside this transaction: a NOTIFY inside it would serialise every commit on
-- PostgreSQL's notify lock.
--   meta: {shop, topic, event_id, webhook_id, triggered_at, api_version, headers}
--   kind: product | delete | inventory | invalid
--   doc:  product   {product_id, updated_at, variants: [{variant_id, inventory_item_id, barcode, sku,
--                     pn, pp, pi, pim, candidates: {barcode, sku, variant_id}, errors}]}
--         delete    {product_id}
--         inventory {inventory_item_id, location_id, available, updated_at}
--         invalid   {reason}

CREATE OR REPLACE FUNCTION esl_ingest_webhook(p_meta jsonb, p_raw bytea, p_kind text, p_doc jsonb)
RETURNS TABLE (inbox_id bigint, outcome text, reason text, enqueued integer)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    v_shop      text := lower(coalesce(p_meta->>'shop', ''));
    v_key       text := coalesce(nullif(p_meta->>'event_id', ''), nullif(p_meta->>'webhook_id', ''));
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
    IF v_key IS NOT NULL THEN
        -- serialise deliveries of one event so the duplicate check below is exact
        PERFORM pg_advisory_xact_lock(hashtextextended(v_shop || '/' || v_key, 2002));
        SELECT w.id INTO v_first FROM webhook_inbox w
        WHERE w.shop_domain = v_shop AND w.dedupe_key = v_key AND w.outcome <> 'duplicate';
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
                        label_changed)
                    SELECT v_map.id, v_shop, v_product, c.variant_id, c.inventory_item_id,
                           c.barcode, c.sku, c.pc, c.pn, c.pp, c.pi, c.pim,
                           (SELECT sum(l.available) FROM inventory_levels l
                             WHERE l.source_store_id = v_shop AND l.inventory_item_id = c.inventory_item_id),
                           CASE WHEN c.problems IS NULL THEN 'valid' ELSE 'invalid' END, c.problems, v_updated, true
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
                        deleted_at = NULL,
                        updated_at = now()
                    WHERE p.source_updated_at IS NULL OR p.source_updated_at <= EXCLUDED.source_updated_at
                    RETURNING p.id, p.status, p.pc, p.validation_errors, p.inventory_item_id, p.source_variant_id,
                              p.label_changed
                ), gone AS (
                    -- variants missing from a newer payload leave the labels too
                    UPDATE products p SET status = 'deleted', deleted_at = now(), updated_at = now(),
                                          source_updated_at = v_updated
                    WHERE p.source_id = v_product AND p.source_system = 'shopify' AND p.source_store_id = v_shop
                      AND p.status <> 'deleted'
                      AND NOT (p.source_variant_id = ANY (SELECT c.variant_id FROM checked c))
                      AND (p.source_updated_at IS NULL OR p.source_updated_at < v_updated)
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
            INSERT INTO inventory_levels AS l (source_store_id, inventory_item_id, location_id, available, source_updated_at)
            VALUES (v_shop, v_item, p_doc->>'location_id', (p_doc->>'available')::bigint, v_updated)
            ON CONFLICT (source_store_id, inventory_item_id, location_id) DO UPDATE SET
                available = EXCLUDED.available, source_updated_at = EXCLUDED.source_updated_at, updated_at = now()
            WHERE l.source_updated_at IS NULL OR EXCLUDED.source_updated_at IS NULL
               OR l.source_updated_at <= EXCLUDED.source_updated_at;
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
                               outcome, reason, items_enqueued, store_mapping_id, raw_body, headers)
    VALUES (v_inbox, v_shop, coalesce(p_meta->>'topic', ''), nullif(p_meta->>'event_id', ''),
            nullif(p_meta->>'webhook_id', ''), v_key, (p_meta->>'triggered_at')::timestamptz, p_meta->>'api_version',
            v_outcome, v_reason, v_n, v_map.id, p_raw, coalesce(p_meta->'headers', '{}'::jsonb));
    RETURN QUERY SELECT v_inbox, v_outcome, v_reason, v_n;
END
$fn$;
