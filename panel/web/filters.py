"""One filter definition per list (django-filter), shared by the web pages, the JSON API and
the shell command, so the three filter alike. The web cuts what it is given (over-long
values, NUL bytes) and shows the rest; the API and the shell refuse invalid filters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import django_filters
from django.db.models import Q, QuerySet

from panel.models import AuditEvent, FailureGroup, Instance, Operation

NAME_LENGTH = 63
# A filter set's rows come back as the queryset it was given, narrowed (custom methods kept).
Rows = TypeVar("Rows", bound=QuerySet)


class ContainerFilter(django_filters.FilterSet):
    """?host=NAME&state=Running&q=part-of-name"""

    host = django_filters.CharFilter(field_name="host__name", max_length=NAME_LENGTH)
    state = django_filters.CharFilter(field_name="status", max_length=16)
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", max_length=63)

    class Meta:
        model = Instance
        fields: list[str] = []


class OperationFilter(django_filters.FilterSet):
    """?host=&container=&kind=&status=&user= (a host matches as source or target)."""

    host = django_filters.CharFilter(method="on_host", max_length=NAME_LENGTH)
    container = django_filters.CharFilter(field_name="instance_name", max_length=NAME_LENGTH)
    kind = django_filters.ChoiceFilter(choices=Operation.Kind.choices)
    status = django_filters.ChoiceFilter(choices=Operation.Status.choices)
    user = django_filters.CharFilter(field_name="requested_by__username", max_length=150)

    class Meta:
        model = Operation
        fields: list[str] = []

    def on_host(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(source_host__name=value) | Q(target_host__name=value))


class FailureFilter(django_filters.FilterSet):
    """?status=&host=&kind= (a host matches when any of the group's failures involved it).
    Without a status every group but the ignored ones is listed, as error trackers list the
    unresolved; status=all lists the ignored ones too."""

    ALL = "all"
    status = django_filters.ChoiceFilter(
        choices=[*FailureGroup.Status.choices, (ALL, "All, ignored too")], method="with_status"
    )
    host = django_filters.CharFilter(field_name="hosts", lookup_expr="has_key", max_length=63)
    kind = django_filters.ChoiceFilter(choices=Operation.Kind.choices)

    class Meta:
        model = FailureGroup
        fields: list[str] = []

    def with_status(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset if value == self.ALL else queryset.filter(status=value)

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("status"):
            queryset = queryset.exclude(status=FailureGroup.Status.IGNORED)
        return queryset


class AuditFilter(django_filters.FilterSet):
    """?user=&action=&outcome=&object=&since=YYYY-MM-DD&until=YYYY-MM-DD"""

    user = django_filters.CharFilter(field_name="username", max_length=100)
    action = django_filters.CharFilter(field_name="action", max_length=100)
    outcome = django_filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    object = django_filters.CharFilter(
        field_name="object_repr", lookup_expr="icontains", max_length=100
    )
    since = django_filters.DateFilter(field_name="at", lookup_expr="date__gte")
    until = django_filters.DateFilter(field_name="at", lookup_expr="date__lte")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


def cut_for_web(filterset_class: type[django_filters.FilterSet], query: Mapping) -> dict:
    """The query's filter values as a page shows them: NUL bytes dropped (PostgreSQL refuses
    them in any query) and each value cut to what its field takes."""
    data = {}
    for name, declared in filterset_class.base_filters.items():
        value = str(query.get(name, "")).replace("\x00", "")
        data[name] = value[: declared.extra.get("max_length", 100)]
    return data


def web_filtered(
    filterset_class: type[django_filters.FilterSet], query: Mapping, queryset: Rows
) -> tuple[Rows, dict]:
    """The filtered rows and the filter values shown back (invalid ones are not applied)."""
    data = cut_for_web(filterset_class, query)
    return filterset_class(data, queryset=queryset).qs, data


def filter_errors(filterset: django_filters.FilterSet) -> dict[str, list[str]]:
    return {field: [str(m) for m in messages] for field, messages in filterset.errors.items()}
