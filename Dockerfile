# ESS workers and the hms CLI on Debian 12, built from this tree.
#   docker build -t ess:0.1.0 .
#   docker run --rm -e ESS_AMQP_URL=... -e ESS_PG_URL=... \
#     -v $PWD/manifests/city2dmv.yml:/etc/ess/city2dmv.yml:ro ess:0.1.0 --manifest /etc/ess/city2dmv.yml
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config librabbitmq-dev libcurl4-openssl-dev libjansson-dev \
      libpq-dev libyaml-dev libssl-dev libmicrohttpd-dev \
    && rm -rf /var/lib/apt/lists/*
COPY CMakeLists.txt /src/
COPY common /src/common
COPY workers /src/workers
COPY deploy /src/deploy
COPY bench /src/bench
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && cmake --build /build -j "$(nproc)" --target ess-push ess-webhook ess-pull ess-reconcile hms \
    && strip /build/workers/push/ess-push /build/workers/webhook/ess-webhook \
             /build/workers/pull/ess-pull /build/workers/reconcile/ess-reconcile /build/deploy/hms

# Runtime: shared libraries only, no compiler, no shell tools beyond Debian's base.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      librabbitmq4 libcurl4 libjansson4 libpq5 libyaml-0-2 libssl3 libmicrohttpd12 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/workers/push/ess-push /build/workers/webhook/ess-webhook \
     /build/workers/pull/ess-pull /build/workers/reconcile/ess-reconcile /build/deploy/hms \
     /usr/local/bin/
COPY manifests /etc/ess/manifests
# nobody:nogroup; numeric, so Kubernetes' runAsNonRoot can verify it.
USER 65534:65534
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ess-push"]
CMD ["--manifest", "/etc/ess/manifests/city2dmv.yml"]
