#!/usr/bin/env bash
# Cron entry point (spec 001 section 4): download + ingest every TumbleDry store.
# Exit codes: 0 ok, 1 some stores failed, 2 configuration error, 3 a session needs
# `crm_download bootstrap` (see docs/crm.md). Extra arguments are passed through,
# e.g. `scripts/crm_download_td.sh --from yesterday --to today`.
set -euo pipefail
cd "${STOREFLOW_DIR:-$(dirname "$0")/..}"
CRM_DOWNLOAD="${CRM_DOWNLOAD:-$(command -v crm_download || echo .venv/bin/crm_download)}"
exec "$CRM_DOWNLOAD" download --crm td --store all --headless "$@"
