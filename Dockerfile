# Build: docker build -t tokenwarden:0.1.0 .
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json Makefile ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && cp src/quota/*.lua dist/quota/ && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
COPY proto ./proto
USER node
EXPOSE 9001 8080
ENTRYPOINT ["node", "dist/main.js"]
