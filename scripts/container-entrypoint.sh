#!/bin/sh
# The image's entrypoint: `docker compose run --rm storeflow hallmark --order-id X` runs
# `storeflow hallmark --order-id X`; a first word naming one of the programs below runs that program,
# so `docker compose run --rm -it storeflow crm_download bootstrap ...` reads as it does on a host.
set -e
case "${1:-}" in
  storeflow | crm_download | sh | bash | python | python3) exec "$@" ;;
esac
exec storeflow "$@"
