"""Prometheus metrics at /metrics, read from the database at scrape time (so every web
replica answers the same): operations by kind and status, their durations, migration
downtime, the job queue's depth, hosts by status. Open to a bearer token
(PANEL_METRICS_TOKEN) or to the networks in PANEL_METRICS_ALLOW (default: this machine)."""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from panel.models import Host, Operation

DURATION_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
DOWNTIME_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)


def histogram(name: str, doc: str, label: str, samples: dict[str, list[float]],
              buckets: tuple[float, ...]) -> HistogramMetricFamily:  # fmt: skip
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, values in sorted(samples.items()):
        cumulative = [(str(float(le)), float(sum(v <= le for v in values))) for le in buckets]
        cumulative.append(("+Inf", float(len(values))))
        family.add_metric([key], cumulative, sum_value=sum(values))
    return family


def queue_depth() -> int | None:
    """Jobs waiting in the broker's queue (None when Redis does not answer)."""
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
        return int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
    except redis.RedisError:
        return None


class PanelCollector:
    def collect(self) -> Iterator[Metric]:
        counts = Counter(Operation.objects.values_list("kind", "status"))
        total = CounterMetricFamily(
            "panel_operations", "Operations by kind and status.", labels=["kind", "status"]
        )
        for (kind, status), count in sorted(counts.items()):
            total.add_metric([kind, status], count)
        yield total
        durations: dict[str, list[float]] = defaultdict(list)
        finished = Operation.objects.exclude(started_at=None).exclude(finished_at=None)
        for kind, started, ended in finished.values_list("kind", "started_at", "finished_at"):
            if started and ended:
                durations[kind].append((ended - started).total_seconds())
        yield histogram("panel_operation_duration_seconds", "From start to end, by kind.",
                        "kind", durations, DURATION_BUCKETS)  # fmt: skip
        downtime: dict[str, list[float]] = defaultdict(list)
        migrations = Operation.objects.filter(kind=Operation.Kind.MIGRATE).exclude(
            downtime_seconds=None
        )
        for strategy, seconds in migrations.values_list("params__strategy", "downtime_seconds"):
            if seconds is not None:
                downtime[str(strategy or "unknown")].append(seconds)
        yield histogram("panel_migration_downtime_seconds",
                        "How long a migrated container ran nowhere, by strategy.",
                        "strategy", downtime, DOWNTIME_BUCKETS)  # fmt: skip
        active = GaugeMetricFamily("panel_operations_active", "Pending and running operations.",
                                   labels=["status"])  # fmt: skip
        for status in Operation.ACTIVE:
            active.add_metric([status], Operation.objects.filter(status=status).count())
        yield active
        depth = queue_depth()
        yield GaugeMetricFamily("panel_queue_up", "1 when the broker answers.",
                                value=0 if depth is None else 1)  # fmt: skip
        yield GaugeMetricFamily("panel_queue_depth", "Jobs waiting in the broker's queue.",
                                value=depth or 0)  # fmt: skip
        hosts = GaugeMetricFamily("panel_hosts", "Hosts by status.", labels=["status"])
        by_status = Counter(Host.objects.values_list("status", flat=True))
        for status in Host.Status.values:
            hosts.add_metric([status], by_status.get(status, 0))
        yield hosts
        yield GaugeMetricFamily("panel_hosts_online", "Hosts that answered their last contact.",
                                value=by_status.get(Host.Status.ONLINE, 0))  # fmt: skip


def allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOW)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        return HttpResponse(
            "Metrics are for the networks in PANEL_METRICS_ALLOW or a PANEL_METRICS_TOKEN.\n",
            status=403, content_type="text/plain",
        )  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PanelCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
