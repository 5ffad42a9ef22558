# syntax=docker/dockerfile:1
# kpx images, one Dockerfile, three stages that matter:
#   docker build --target controller -t kpx-controller:0.1.0 .   the controller (non-root)
#   docker build --target executor   -t kpx-executor:0.1.0 .     the executor: iptables (nft and legacy), ipset,
#                                                                conntrack, nftables, ipvsadm from Debian
# The build stage runs what CI runs (npm ci, npm run build); the runtime stages hold production dependencies only
# (npm ci --omit=dev) and the compiled dist/ of every workspace, on Node 20 LTS, Debian bookworm slim.
# Base images are pinned by tag; pin them by digest too where your registry policy asks for it.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY libs ./libs
COPY services ./services
COPY test ./test
RUN npm ci --no-audit --no-fund && npm run build
# The images need no compiled tests.
RUN find libs services -path '*/dist/test' -prune -exec rm -rf {} +

# Production dependencies only; workspace packages are linked, their sources come from the build stage.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY libs/common/package.json libs/common/
COPY libs/proto/package.json libs/proto/
COPY libs/model/package.json libs/model/
COPY libs/compiler/package.json libs/compiler/
COPY libs/ruleset/package.json libs/ruleset/
COPY libs/node-states/package.json libs/node-states/
COPY libs/testing/package.json libs/testing/
COPY libs/transport/package.json libs/transport/
COPY libs/telemetry/package.json libs/telemetry/
COPY libs/kernel/package.json libs/kernel/
COPY libs/replay/package.json libs/replay/
COPY services/controller/package.json services/controller/
COPY services/executor/package.json services/executor/
COPY services/cli/package.json services/cli/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kpx" \
      org.opencontainers.image.description="A Kubernetes service proxy: central compiler, versioned deltas, node executors" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:20.20.2-bookworm-slim"
ENV NODE_ENV=production
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=deps /app ./
COPY --from=build /src/libs/common/dist libs/common/dist
COPY --from=build /src/libs/proto/dist libs/proto/dist
COPY --from=build /src/libs/model/dist libs/model/dist
COPY --from=build /src/libs/compiler/dist libs/compiler/dist
COPY --from=build /src/libs/ruleset/dist libs/ruleset/dist
COPY --from=build /src/libs/node-states/dist libs/node-states/dist
COPY --from=build /src/libs/testing/dist libs/testing/dist
COPY --from=build /src/libs/transport/dist libs/transport/dist
COPY --from=build /src/libs/telemetry/dist libs/telemetry/dist
COPY --from=build /src/libs/kernel/dist libs/kernel/dist
COPY --from=build /src/libs/replay/dist libs/replay/dist
COPY --from=build /src/services/controller/dist services/controller/dist
COPY --from=build /src/services/executor/dist services/executor/dist
COPY --from=build /src/services/cli/dist services/cli/dist
COPY services/cli/bin services/cli/bin
RUN ln -s /app/services/cli/bin/kpx.js /usr/local/bin/kpx && kpx --version

# The controller: watches the API (or a manifests directory), publishes on NATS. No privileges, not root.
FROM runtime AS controller
USER node
EXPOSE 10249 10260
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:10249/livez').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "kpx", "controller"]
CMD ["--help"]

# The executor: programs the node's kernel, so root with NET_ADMIN (the DaemonSet runs it privileged, as
# kube-proxy). iptables-wrapper picks the nft or legacy backend at start, by which one holds more rules.
FROM runtime AS executor
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables ipset conntrack ipvsadm iproute2 kmod \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/image/iptables-wrapper.sh /usr/local/sbin/iptables-wrapper
EXPOSE 10256 10249
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:10256/livez').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/sbin/iptables-wrapper", "kpx", "executor"]
CMD ["--help"]
