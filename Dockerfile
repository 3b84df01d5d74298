# ESS workers and the hms CLI on Debian 12, built from this tree.
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config librabbitmq-dev libcurl4-openssl-dev libjansson-dev \
      libpq-dev libyaml-dev libssl-dev libmicrohttpd-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    && cmake --build /build -j "$(nproc)"

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      librabbitmq4 libcurl4 libjansson4 libpq5 libyaml-0-2 libssl3 libmicrohttpd12 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/workers/push/ess-push /build/deploy/hms /usr/local/bin/
COPY manifests /etc/ess/manifests
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/ess-push"]
CMD ["--manifest", "/etc/ess/manifests/city2dmv.yml"]
