# storeflow's image: Debian bookworm, Debian's Chromium, storeflow installed from its wheel, non-root.
#
#   docker build -t storeflow .                          # base python:3.11-slim-bookworm from a registry
#   podman build --format docker --build-arg BASE=localhost/storeflow-base:bookworm -t storeflow .
#
# BASE is any Debian bookworm image with python3 and python3-venv (scripts/container-test.sh makes one
# with mmdebstrap when no registry is reachable). Dependencies come from build/wheels/pyX.Y when the
# host built them there (`pip wheel -w build/wheels/py3.11 . 'setuptools>=68' wheel`), which is how
# an image builds without a package index; otherwise the build stage downloads them.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
COPY . /src
RUN set -eu; \
    python3 -m venv /opt/storeflow; \
    wheels="/src/build/wheels/$(python3 -c 'import sys; print("py%d.%d" % sys.version_info[:2])')"; \
    if [ ! -d "$wheels" ]; then /opt/storeflow/bin/pip wheel --wheel-dir "$wheels" /src 'setuptools>=68' wheel; fi; \
    /opt/storeflow/bin/pip wheel --no-index --find-links "$wheels" --no-deps --wheel-dir /dist /src; \
    /opt/storeflow/bin/pip install --no-index --find-links "$wheels" --no-cache-dir /dist/storeflow-*.whl; \
    /opt/storeflow/bin/storeflow --version

FROM ${BASE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium libatomic1 fonts-liberation fonts-dejavu-core passwd \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
RUN groupadd --system --gid 10001 storeflow \
 && useradd --system --uid 10001 --gid storeflow --home-dir /var/lib/storeflow --shell /usr/sbin/nologin storeflow \
 && mkdir -p /var/lib/storeflow /app/data /app/sessions /app/logs /app/profiles /app/downloads /app/search_results \
      /app/sandbox \
 && chown -R storeflow:storeflow /var/lib/storeflow /app \
 && chmod 0700 /app/sessions /app/profiles
COPY --from=build /opt/storeflow /opt/storeflow
COPY scripts/container-entrypoint.sh /usr/local/bin/storeflow-entrypoint
ENV PATH=/opt/storeflow/bin:$PATH \
    HOME=/var/lib/storeflow \
    STOREFLOW_HOME=/var/lib/storeflow \
    STOREFLOW_BROWSER=/usr/bin/chromium \
    PYTHONUNBUFFERED=1
USER storeflow
WORKDIR /app
# `storeflow serve` answers /health; other services (the ESL worker, one-off runs) turn this off in compose.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["storeflow-entrypoint"]
CMD ["--help"]
