"""`manage.py doctor`: is everything the panel needs there and answering? Each failure says
how to fix it; the exit status is 1 when anything failed."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from panel import health


class Command(BaseCommand):
    help = "Check the database, Redis, workers, each host's agent and each host."

    def handle(self, *args, **options) -> None:
        findings = [health.database()]
        if findings[0].ok:
            findings.append(health.identity())
        findings.append(health.redis())
        if findings[-1].ok:
            findings += [health.workers(), *health.agents()]
        findings += health.hosts(live=True)
        for finding in findings:
            mark = self.style.SUCCESS("ok  ") if finding.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {finding.subject}: {finding.detail}")
            if not finding.ok and finding.fix:
                self.stdout.write(f"     fix: {finding.fix}")
        if not all(finding.ok for finding in findings):
            raise SystemExit(1)
