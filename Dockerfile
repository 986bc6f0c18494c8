# The panel's image for docker-compose.yml: web, worker and beat run the same image.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PANEL_DATA_DIR=/data
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --system --home /data panel && mkdir -p /data && chown panel /data \
    && PANEL_SECRET_KEY=build-time-only-key-not-used-at-run-time python manage.py collectstatic --noinput
USER panel
EXPOSE 8000
