# agentsocket in a container: the official Deno image, dependencies cached at build time, run as
# the image's unprivileged `deno` user with `deno task start`.
#
#   docker build -t agentsocket .
#   docker run --rm -p 8000:8000 --env-file agentsocket.env agentsocket
#
# Configuration is environment variables (README, "Configuration"); the server listens on
# HOST:PORT (default 0.0.0.0:8000; a platform that sets PORT, such as Cloud Run, is followed).
FROM denoland/deno:2.9.6

WORKDIR /app

# From here on as the image's non-root user (uid 1993): the cache it fills (DENO_DIR, /deno-dir)
# is its own, while the application's files, copied as root, stay read-only to it.
USER deno

# Dependencies first, so that this layer is rebuilt only when deno.json or deno.lock change.
# --frozen: a lock file out of date with deno.json fails the build instead of resolving anew.
COPY deno.json deno.lock ./
RUN deno install --frozen

# Then the code (.dockerignore keeps out all but main.ts and src/). Caching main.ts's module
# graph fails the build if it needs anything the lock file does not pin; at run time nothing
# is downloaded.
COPY . .
RUN deno cache --frozen main.ts

EXPOSE 8000

# Liveness for Docker and compose (Cloud Run and Kubernetes use their own HTTP probes):
# /health/live answers while the process runs; /health/ready is for routing traffic.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["deno", "eval", "const r = await fetch(`http://127.0.0.1:${Deno.env.get('PORT') ?? '8000'}/health/live`); Deno.exit(r.ok ? 0 : 1)"]

# The image's entrypoint (tini) forwards SIGTERM to `deno task`, which forwards it to the server:
# it drains (DRAIN_TIMEOUT_MS) and exits 0. Give `docker stop` a longer grace than the drain
# (--stop-timeout, compose `stop_grace_period`); Docker's default is 10 s.
CMD ["deno", "task", "start"]
