-- Spec 002: the variants of one Shopify product, per shop.
--
-- products/update (variants a newer payload dropped) and products/delete look them up on every
-- delivery by (source_system, source_store_id, source_id). With only an index on source_id, the
-- planner could prefer the (source_system, source_store_id) prefix of products_source_variant: a
-- walk over every product of the shop for each webhook, which slowed ingest to a third as the
-- catalogue grew. This index answers the lookup exactly; the source_id-only index had no other user.
CREATE INDEX IF NOT EXISTS products_source_product_key ON products (source_system, source_store_id, source_id);
DROP INDEX IF EXISTS products_source_product;
