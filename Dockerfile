# The platform's image: `computebill` (app, worker, migrate, seed, …) and `stripe-emulator`.
#   docker build -t computebill .
#   docker run computebill app | worker | migrate | seed | …
# The base images are build arguments, so that a machine without a registry can build on its
# own (deploy/build-base-images.sh makes them from Debian packages). Both stages that hold
# Python use the same image: the virtual environment links to its interpreter.
ARG PYTHON_IMAGE=python:3.13-slim
ARG NODE_IMAGE=node:22-slim

# Web assets: Tailwind CSS (which reads the class names in the templates and the code), htmx
# and the fonts, into src/computebill/web/static/dist.
FROM ${NODE_IMAGE} AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY src src
RUN npm run --silent build

# The virtual environment, with the project installed into it as a wheel (its assets inside,
# see pyproject's artifacts), locked dependencies only: no extras (embedded servers, dev tools).
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
# No bytecode is compiled ahead (a third of the environment's size); the processes compile
# what they import in memory as they start.
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/computebill PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet --no-cache-dir uv==${UV_VERSION}
WORKDIR /build
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --frozen --no-install-project --no-dev --python python3 --no-cache
COPY README.md ./
COPY src src
COPY --from=assets /build/src/computebill/web/static/dist src/computebill/web/static/dist
# Then the C and Cython sources and type stubs that some wheels ship beside their compiled
# modules go: nothing reads them at run time.
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable --python python3 --no-cache \
    && find /opt/computebill -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' \
        -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' \) -delete

# What runs: the interpreter, the environment and nothing to compile with. It writes nowhere
# but /tmp (mount a tmpfs there) and the emulator's data directory (a volume), so the root
# filesystem may be read-only.
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 computebill \
    && useradd --uid 10001 --gid computebill --no-create-home --home-dir /var/lib/computebill \
        --shell /usr/sbin/nologin computebill \
    && install -d -o computebill -g computebill /var/lib/computebill /var/lib/computebill/stripe-emulator
COPY --from=build /opt/computebill /opt/computebill
ENV PATH=/opt/computebill/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 LOG_FORMAT=json WORKER_METRICS_HOST=0.0.0.0
USER computebill
WORKDIR /var/lib/computebill
EXPOSE 8000 9101 12111
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["computebill"]
CMD ["app", "--host", "0.0.0.0", "--port", "8000"]
