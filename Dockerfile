# syntax=docker/dockerfile:1
# The s2s-voice-agent worker. Build: docker build -t s2s-agent .
# Run:   docker run --init --env-file .env s2s-agent
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv

# A fixed non-root user; the worker needs no privileges.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin agent
WORKDIR /app

# Dependencies first, exactly as locked, so code changes don't reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project

COPY agent ./agent
COPY plugins ./plugins
RUN uv sync --locked --no-dev && chown -R agent:agent /app

USER agent
ENV PATH="/app/.venv/bin:$PATH"

# Import providers and tools once (bytecode is compiled by uv above) and fetch files any
# livekit-agents plugin needs, so a broken image fails here rather than on the first call.
RUN python -m agent download-files

# livekit-agents' health endpoint (GET / -> 200 OK) listens here in `start` mode.
EXPOSE 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/', timeout=3)"]

# SIGTERM drains: no new jobs, conversations finish their turn within S2S_DRAIN_TIMEOUT
# (default 30 s); give `docker stop` / Kubernetes a grace period a little longer than that.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "agent", "start"]
