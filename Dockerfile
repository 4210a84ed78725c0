# Build stage: compile TypeScript with the dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY daemon ./daemon
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# Runtime stage: only what runs, as a non-root user, data on a volume.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    MAILSYNC_STORE_PATH=/data/store \
    MAILSYNC_STORE_KEYFILE=/data/master.key \
    MAILSYNC_API_HOST=0.0.0.0
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8025 2587 2525
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.MAILSYNC_API_PORT||8025)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# Mount a config file and pass --config /etc/mailsync/mailsync.yaml, or configure with MAILSYNC_* env vars.
ENTRYPOINT ["node", "dist/daemon/cli/main.js"]
CMD ["serve"]
