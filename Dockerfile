# mailsync container image. Build: docker build -t mailsync .
# Run:  docker run -v mailsync-data:/data -p 8025:8025 -e MAILSYNC_API_TOKENS=... mailsync
# or mount a config file: -v ./mailsync.yaml:/etc/mailsync/mailsync.yaml:ro ... mailsync serve --config /etc/mailsync/mailsync.yaml

# Build stage: compile TypeScript with the dev dependencies, then drop them.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY daemon ./daemon
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# Runtime stage: only what runs, as the unprivileged `node` user (uid 1000), data on a volume.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    MAILSYNC_STORE_PATH=/data/store \
    MAILSYNC_STORE_KEYFILE=/data/master.key \
    MAILSYNC_API_HOST=0.0.0.0 \
    MAILSYNC_SMTP_SUBMISSION_HOST=0.0.0.0 \
    MAILSYNC_SMTP_INTAKE_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
RUN mkdir -p /data /etc/mailsync && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8025 2587 2525
# Liveness: the process answers /healthz. Readiness (store open, listeners up) is /readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.MAILSYNC_API_PORT||8025)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# exec form: the daemon runs as PID 1 and handles SIGTERM from `docker stop` itself
ENTRYPOINT ["node", "dist/daemon/cli/main.js"]
CMD ["serve"]
