"""pg_dump output is normalised so the snapshot does not change between runs, servers or client builds."""

from __future__ import annotations

from storeflow.db.schema import HEADER, normalise

DUMP = """--
-- PostgreSQL database dump
--

\\restrict Zk1sQ8r2aT

-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: t; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.t (
    id bigint NOT NULL
);



CREATE FUNCTION public.f() RETURNS void
    LANGUAGE plpgsql
    AS $$
BEGIN
    -- a comment of ours stays
    NULL;
END $$;

--
-- PostgreSQL database dump complete
--

\\unrestrict Zk1sQ8r2aT
"""


def test_normalise_keeps_statements_and_our_comments_and_drops_dump_noise() -> None:
    assert normalise(DUMP) == HEADER + (
        "\nCREATE TABLE public.t (\n    id bigint NOT NULL\n);\n\n"
        "CREATE FUNCTION public.f() RETURNS void\n    LANGUAGE plpgsql\n    AS $$\nBEGIN\n"
        "    -- a comment of ours stays\n    NULL;\nEND $$;\n"
    )


def test_normalise_is_stable() -> None:
    assert normalise(normalise(DUMP)) == normalise(DUMP)
