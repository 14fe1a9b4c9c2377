# imagedock: one image, two processes (`imagedock receiver`, `imagedock worker`).
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml README.md ./
COPY imagedock ./imagedock
COPY receiver ./receiver
COPY worker ./worker
# Part of the one distribution, but without its extra (Pillow, SeaweedFS) nothing imports it.
COPY simulator ./simulator
RUN /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home imagedock
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8000
# Images are spooled here past 8 MiB while they stream to S3.
ENV TMPDIR=/tmp
ENTRYPOINT ["imagedock"]
CMD ["receiver", "--host", "0.0.0.0", "--port", "8000"]
