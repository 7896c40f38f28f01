# The gateway image: slim Python, non-root, cache on a volume, health-checked.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_CACHE_DIR=/var/cache/hls-gateway

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY playlists ./playlists
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/cache/hls-gateway /run/hls-gateway \
 && chown gateway /var/cache/hls-gateway /run/hls-gateway

USER gateway
VOLUME ["/var/cache/hls-gateway"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["hls-gateway", "serve"]
