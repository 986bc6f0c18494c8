"""The OpenAPI 3.1 document of the JSON API, generated from the code that serves it.

Each API view says what it answers with `@describe` (method, summary, the shape it returns);
the rest comes from the code the view already uses: path parameters from the URLconf, the
query from the list's django-filter FilterSet, the request body from the web's form, the
response from the TypedDict the serialiser returns (panel/web/api/shapes.py, checked by
mypy). docs/api.md says why this rather than django-ninja or drf-spectacular.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union, cast, get_args, get_origin, get_type_hints, is_typeddict

import django_filters
from django import forms
from django.urls import URLPattern, get_resolver

from panel.web.api.shapes import ErrorShape

REFUSALS = {
    400: "Invalid input: `error` says why, `errors` per field.",
    401: "No valid token: send `Authorization: Bearer <token>`.",
    403: "Your role does not allow this.",
    404: "No such object (or page).",
    405: "Not a method of this path; `Allow` lists them.",
    409: "The container is busy (`active_operation`), or the operation already ended.",
    413: "The body is over 64 KiB.",
    415: "The body is not `application/json`.",
}


@dataclass(frozen=True)
class Doc:
    """What one method of an API view does, for the document."""

    method: str
    summary: str
    response: Any = None  # a shape (TypedDict); None for a file
    status: int = 200
    also: tuple[int, ...] = ()  # other success statuses with the same answer
    page: bool = False  # a paginated list of `response`
    body: type[forms.Form] | None = None
    query: type[django_filters.FilterSet] | None = None
    refusals: tuple[int, ...] = ()
    public: bool = False
    file: str = ""  # the media type of a file answer


def describe(method: str, summary: str, **fields) -> Callable[[Callable], Callable]:
    def decorator(view: Callable) -> Callable:
        view.api_docs = [*getattr(view, "api_docs", []), Doc(method, summary, **fields)]  # type: ignore[attr-defined]
        return view

    return decorator


def api_patterns() -> list[tuple[str, URLPattern, list[Doc]]]:
    """Every described API route as (OpenAPI path, pattern, docs), in URLconf order."""
    found = []
    for pattern in get_resolver().url_patterns:
        docs = getattr(getattr(pattern, "callback", None), "api_docs", None)
        if isinstance(pattern, URLPattern) and docs:
            route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))
            found.append(("/" + route, pattern, docs))
    return found


def document() -> dict:
    components: dict[str, dict] = {}
    paths: dict[str, dict] = {}
    for path, pattern, docs in api_patterns():
        for doc in docs:
            paths.setdefault(path, {})[doc.method.lower()] = operation(
                path, pattern, doc, components
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LXD panel API",
            "version": "1",
            "description": "The web's actions and rules for automation: docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def operation(path: str, pattern: URLPattern, doc: Doc, components: dict) -> dict:
    name = getattr(pattern, "name", None) or path
    parameters = [
        {"name": param, "in": "path", "required": True, "schema": {"type": "integer"}}
        for param in re.findall(r"{(\w+)}", path)
    ]
    if doc.query is not None:
        parameters += query_parameters(doc.query)
    if doc.page:
        parameters.append({"name": "page", "in": "query", "schema": {"type": "integer"}})
    answer: dict = {"description": doc.summary}
    if doc.file:
        answer["content"] = {doc.file: {"schema": {"type": "string", "format": "binary"}}}
    elif doc.response is not None:
        schema = schema_of(doc.response, components)
        answer["content"] = {
            "application/json": {"schema": page_of(schema) if doc.page else schema}
        }
    refusals = (*doc.refusals, 405) if doc.public else (401, *doc.refusals, 405)
    error = schema_of(ErrorShape, components)
    result: dict = {
        "operationId": f"{name}-{doc.method.lower()}",
        "summary": doc.summary,
        "tags": [path.split("/")[2] or "index"],
        "security": [] if doc.public else [{"bearer": []}],
        "parameters": parameters,
        "responses": {
            **{str(status): answer for status in sorted({doc.status, *doc.also})},
            **{
                str(code): {
                    "description": REFUSALS[code],
                    "content": {"application/json": {"schema": error}},
                }
                for code in sorted(set(refusals))
            },
        },
    }
    if doc.body is not None:
        result["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": form_schema(doc.body)}},
        }
    return result


def page_of(schema: dict) -> dict:
    nullable_url = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["count", "next", "previous", "results"],
        "properties": {
            "count": {"type": "integer"},
            "next": nullable_url,
            "previous": nullable_url,
            "results": {"type": "array", "items": schema},
        },
    }


SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_of(annotation: Any, components: dict) -> dict:
    """JSON Schema for a type the shapes use; a TypedDict becomes a named component."""
    if annotation in SCALARS:
        return {"type": SCALARS[annotation]}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        options = [schema_of(arg, components) for arg in args if arg is not type(None)]
        one = options[0] if len(options) == 1 else {"anyOf": options}
        if type(None) not in args:
            return one
        if set(one) == {"type"}:
            return {"type": [one["type"], "null"]}
        return {"anyOf": [one, {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": schema_of(args[0], components)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], components)}
    if is_typeddict(annotation):
        name = annotation.__name__.removesuffix("Shape")
        if name not in components:
            components[name] = {}  # placeholder first: shapes refer to each other
            hints = get_type_hints(annotation)
            components[name] = {
                "type": "object",
                "required": sorted(annotation.__required_keys__),
                "properties": {key: schema_of(hint, components) for key, hint in hints.items()},
            }
        return {"$ref": f"#/components/schemas/{name}"}
    return {}  # Any: whatever LXD reported


def form_schema(form_class: type[forms.Form]) -> dict:
    """A request body from the web's form: the same fields, limits and choices."""
    properties, required = {}, []
    for name, field in form_class.base_fields.items():
        properties[name] = field_schema(field)
        if field.required:
            required.append(name)
    return {"type": "object", "required": required, "properties": properties}


def field_schema(field: forms.Field) -> dict:
    schema: dict[str, Any] = {"description": str(field.help_text or field.label or "")}
    if isinstance(field, forms.BooleanField):
        schema["type"] = "boolean"
    elif isinstance(field, forms.ModelChoiceField):
        schema["type"] = ["integer", "string"]  # a primary key, or a host's name
    elif isinstance(field, forms.IntegerField):
        schema["type"] = "integer"
    elif isinstance(field, forms.ChoiceField):
        choices = cast("list[tuple[Any, Any]]", field.choices)
        schema |= {"type": "string", "enum": [str(value) for value, _ in choices]}
    else:
        schema["type"] = "string"
        for limit in ("max_length", "min_length"):
            if getattr(field, limit, None) is not None:
                schema[limit.replace("_l", "L")] = getattr(field, limit)
    if not schema["description"]:
        del schema["description"]
    return schema


def query_parameters(filterset: type[django_filters.FilterSet]) -> list[dict]:
    """A list's query from its FilterSet, the one the page and the shell use too."""
    parameters = []
    for name, declared in filterset.base_filters.items():
        schema: dict[str, Any] = {"type": "string"}
        if isinstance(declared, django_filters.ChoiceFilter):
            schema["enum"] = [str(value) for value, _ in declared.extra["choices"]]
        if declared.extra.get("max_length"):
            schema["maxLength"] = declared.extra["max_length"]
        parameters.append({"name": name, "in": "query", "schema": schema})
    return parameters
