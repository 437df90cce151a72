# Kagami container image.
#
#   docker build -t kagami .            (or: podman build --format docker -t kagami .)
#   docker run -p 5000:5000 -v kagami-data:/var/lib/kagami kagami
#
# The base images are arguments so that a build can use a mirror or an image assembled locally.
# BUILD_IMAGE must have npm and a C++ toolchain (better-sqlite3 is a native module); it must carry
# the same Node.js major version and the same libc as RUNTIME_IMAGE, or the compiled module will not
# load at run time. APP_SOURCE=prebuilt skips npm altogether and takes dist/ and a production
# node_modules/ from prebuilt/ in the build context (what the image test does; see docs/operations.md).
ARG BUILD_IMAGE=docker.io/library/node:22-bookworm
ARG RUNTIME_IMAGE=docker.io/library/node:22-bookworm-slim
ARG APP_SOURCE=build

FROM ${BUILD_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: "prepare" would build before the sources are here. The native module is built next.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev && rm -rf src tsconfig*.json

FROM scratch AS prebuilt
COPY prebuilt/ /app/

FROM ${APP_SOURCE} AS app

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=
LABEL org.opencontainers.image.title="kagami" \
      org.opencontainers.image.description="A self-hosted, OCI-compliant container registry and pull-through mirror" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
ENV NODE_ENV=production
COPY --from=app /app /app
COPY examples/container/config.json /etc/kagami/config.json
# The data directory belongs to the unprivileged user (uid 1000, "node" in the official images);
# a fresh named volume takes this ownership over; in Kubernetes, set fsGroup: 1000. Exec form with
# node itself: no shell needed in the runtime image.
RUN ["node", "-e", "const fs = require('node:fs'); fs.mkdirSync('/var/lib/kagami', { recursive: true }); fs.chownSync('/var/lib/kagami', 1000, 1000)"]
USER 1000:1000
WORKDIR /var/lib/kagami
VOLUME /var/lib/kagami
EXPOSE 5000
# SIGTERM is what `serve` drains on: it stops accepting, finishes in-flight requests within
# http.shutdownTimeout, then closes the database.
STOPSIGNAL SIGTERM
# No curl in slim images: node asks /readyz itself. Reads the port from the config it serves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "/app/dist/cli/healthcheck.js"]
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve", "--config", "/etc/kagami/config.json"]
