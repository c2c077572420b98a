-- retailsin1Wholesale is a count (retail units in one wholesale unit; the original importer stores it as
-- INTEGER), not money. A stored value with a fraction cannot be a count (an older simulator wrote money
-- there): it becomes NULL, and the portal's text stays in the line's raw_data.
ALTER TABLE order_items ALTER COLUMN retailsin1_wholesale TYPE integer
    USING CASE
        WHEN retailsin1_wholesale = trunc(retailsin1_wholesale) AND abs(retailsin1_wholesale) <= 2147483647
            THEN retailsin1_wholesale::integer
    END;
