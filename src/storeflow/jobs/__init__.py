"""Scheduled and on-demand work on procrastinate (PostgreSQL job queue), on storeflow's own database.

Pure rules: `names` (task names, queues), `schedules` (``[[schedule]]`` -> periodic definitions),
`windows` (Hallmark's incremental window), `policy` (retry backoff, transient or permanent, worst exit
code). I/O: `app` (the procrastinate App and its tasks), `store` (job outcomes), `worker`, `cli`.
"""
