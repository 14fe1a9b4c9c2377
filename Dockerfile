# imagedock: one image for every role. `imagedock receiver` by default; `imagedock worker` by
# overriding the command. Dependencies come from requirements.lock (hashes checked), the project
# itself without them; no simulator or dev extras, no secrets: settings arrive as environment.
ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
WORKDIR /src
RUN python -m venv /venv
COPY requirements.lock ./
RUN /venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY imagedock ./imagedock
COPY receiver ./receiver
COPY worker ./worker
# Part of the one distribution, but without its extra (Pillow, SeaweedFS) nothing imports it.
COPY simulator ./simulator
RUN /venv/bin/pip install --no-cache-dir --no-deps .

FROM ${PYTHON} AS runtime
RUN useradd --system --uid 10001 --no-create-home imagedock
COPY --from=build /venv /venv
# Images are spooled to TMPDIR past 8 MiB while they stream to S3: mount a volume there when
# the root filesystem is read-only.
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/tmp
USER 10001
EXPOSE 8000
# The receiver's liveness; the worker's probe is `imagedock check --worker` (set by compose and
# the Kubernetes manifests, which override this for the worker).
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["imagedock"]
CMD ["receiver", "--host", "0.0.0.0", "--port", "8000"]

# The simulated Apiframe, for compose's `simulator` profile and local trials only: the one
# place the simulator extra (Pillow and jsonschema; SeaweedFS runs apart) is installed.
FROM runtime AS simulator
USER 0
RUN /venv/bin/pip install --no-cache-dir "pillow>=10.0" "jsonschema>=4.18"
USER 10001
EXPOSE 9000
HEALTHCHECK NONE
CMD ["simulator", "--host", "0.0.0.0", "--port", "9000"]

# Last, so a plain `docker build` makes the production image.
FROM runtime
