# media-proxy server image: a multi-stage build, a small Debian runtime, a non-root user.
#
#   docker build -t media-proxy .
#   docker run --rm -p 3003:3003 media-proxy
#   docker run --rm -p 3003:3003 -e MEDIA_PROXY__CACHE__KIND=s3 \
#     -e MEDIA_PROXY__CACHE__BUCKET=my-media -e AWS_REGION=eu-west-1 media-proxy
#
# Settings: MEDIA_PROXY__<KEY> environment variables (docs/configuration.md) or a TOML file:
# the image carries the commented sample (deploy/media-proxy.toml, every key at its default)
# at /etc/media-proxy/media-proxy.toml; mount your own there and run
#   docker run … media-proxy --config /etc/media-proxy/media-proxy.toml

FROM rust:1.95-bookworm AS build
# cmake and nasm build the vendored libjpeg-turbo, libaom and libavif.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p media-proxy \
 && install -m 0755 target/release/media-proxy /usr/local/bin/media-proxy

FROM debian:bookworm-slim
# TLS to origins and to S3 checks certificates against the system's store.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/media-proxy --create-home media-proxy
COPY --from=build /usr/local/bin/media-proxy /usr/local/bin/media-proxy
COPY deploy/media-proxy.toml /etc/media-proxy/media-proxy.toml
USER media-proxy
# The local store (`media/`) and variant cache (`cache/`) live here: mount a volume to keep
# them, or use S3 for both.
WORKDIR /var/lib/media-proxy
ENV MEDIA_PROXY__LISTEN=0.0.0.0:3003 \
    MEDIA_PROXY__LOG__FORMAT=json
EXPOSE 3003
# SIGTERM: requests in flight finish for `shutdown_grace` (30 s); give `docker stop -t 40`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/media-proxy"]
CMD ["serve"]
