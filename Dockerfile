# stream-orch worker image. Stage one builds the wheel; stage two installs it and nothing else.
# The base is pinned by tag (python:3.11.11-slim-bookworm): no registry is reachable where this
# was written, so no digest could be resolved; pin @sha256 where you build.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY stream_orch ./stream_orch
RUN python -m build --wheel --outdir /dist

FROM python:3.11.11-slim-bookworm
RUN groupadd --gid 10001 stream-orch \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin stream-orch \
    && mkdir -p /var/lib/stream-orch \
    && chown stream-orch:stream-orch /var/lib/stream-orch
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER 10001:10001
WORKDIR /var/lib/stream-orch
ENV STREAM_ORCH_STATE_DIR=/var/lib/stream-orch PYTHONUNBUFFERED=1
EXPOSE 9308
ENTRYPOINT ["stream-orch"]
CMD ["--help"]
