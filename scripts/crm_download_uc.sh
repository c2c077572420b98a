#!/usr/bin/env bash
# Cron entry point (spec 001 section 4): download + ingest every UClean store.
# Exit codes: 0 ok, 1 some stores failed, 2 configuration error, 3 a session needs
# `crm_download bootstrap` (see docs/crm.md). Extra arguments are passed through.
set -euo pipefail
cd "${STOREFLOW_DIR:-$(dirname "$0")/..}"
CRM_DOWNLOAD="${CRM_DOWNLOAD:-$(command -v crm_download || echo .venv/bin/crm_download)}"
exec "$CRM_DOWNLOAD" download --crm uc --store all --headless "$@"
