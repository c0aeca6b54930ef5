# StreamForge: one image for every role (run, ingest, persist, serve, migrate).
# Build: docker build -t streamforge:local .

FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka (bundled, with OpenSSL for TLS and SASL/SCRAM) and zstd build from C sources.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential perl python3 pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin streamforge \
    && cp target/release/streamforge /usr/local/bin/streamforge

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/streamforge --create-home streamforge
COPY --from=build /usr/local/bin/streamforge /usr/local/bin/streamforge
USER streamforge
WORKDIR /var/lib/streamforge
ENV STREAMFORGE_HTTP_ADDR=0.0.0.0:8080 \
    STREAMFORGE_DATA_DIR=/var/lib/streamforge/data \
    STREAMFORGE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=6 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["streamforge"]
CMD ["run"]
