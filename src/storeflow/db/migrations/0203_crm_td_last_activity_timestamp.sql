-- TumbleDry "Last Activity" is a date/time in the report's formats, not a status word: store it as a
-- timestamp. Old text that reads as a date/time (day before month, as in every TumbleDry format) is
-- converted; any other old text is kept out of the way in the row's remarks, worded as a new ingest words
-- it, and stays in raw_data as read.
SET LOCAL datestyle = 'ISO, DMY';

CREATE FUNCTION pg_temp.td_activity_at(value text) RETURNS timestamp LANGUAGE plpgsql AS $$
BEGIN
    IF value IS NULL OR btrim(value) = '' OR value !~ '[0-9]' THEN
        RETURN NULL;  -- no digit: a status word, or a keyword such as 'today' that is not the report's
    END IF;
    RETURN btrim(value)::timestamp;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;

UPDATE stg_td_order_report
SET remarks = concat_ws('; ', remarks, format('Last Activity: not a date: %L', btrim(last_activity)))
WHERE btrim(last_activity) <> '' AND pg_temp.td_activity_at(last_activity) IS NULL;
ALTER TABLE stg_td_order_report ALTER COLUMN last_activity TYPE timestamp USING pg_temp.td_activity_at(last_activity);

UPDATE fact_td_orders
SET remarks = concat_ws('; ', remarks, format('Last Activity: not a date: %L', btrim(last_activity)))
WHERE btrim(last_activity) <> '' AND pg_temp.td_activity_at(last_activity) IS NULL;
ALTER TABLE fact_td_orders ALTER COLUMN last_activity TYPE timestamp USING pg_temp.td_activity_at(last_activity);
