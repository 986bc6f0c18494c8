# The panel's image for docker-compose.yml: migrate, web, worker and beat run the same image.
# Runtime packages only (requirements.txt); static files are built into the image at
# /app/staticfiles, so an upgraded image serves its own files, never a volume's old ones.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PANEL_DATA_DIR=/data \
    PANEL_STATIC_ROOT=/app/staticfiles
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --system --home /data panel && mkdir -p /data && chown panel /data \
    && PANEL_SECRET_KEY=build-time-only-key-not-used-at-run-time PANEL_DATA_DIR=/tmp/build \
       python manage.py collectstatic --noinput -v0 \
    && rm -rf /tmp/build
USER panel
EXPOSE 8000
