"""The OpenAPI document: it describes every API route the app serves, and only those, and it holds
together as an OpenAPI 3.1 document (every $ref resolves, every path parameter is declared).

No OpenAPI validator is among our dependencies, so the structure is checked here directly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.routing import Mount, Route

from headwater import __version__
from headwater.config import ServerSettings
from headwater.crypto import KeyFile
from headwater.server.app import create_app
from headwater.server.middleware import SIGNED_PREFIXES
from headwater.server.openapi import openapi_document

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DASHBOARD_MODULE = "headwater.server.dashboard"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_document(__version__)


def served_routes(tmp_path: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """(path template, method) of every API route of the app as the server builds it, and the
    paths of the dashboard's routes."""
    settings = ServerSettings(data_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'hw.db'}")
    app = create_app(settings, KeyFile.load_or_create(tmp_path / "keys.json"))
    api: set[tuple[str, str]] = set()
    dashboard: set[str] = set()
    for route in app.starlette.routes:
        if isinstance(route, Mount):
            assert route.name == "static", f"a mount the document does not know: {route.path}"
            dashboard.add(route.path)
            continue
        assert isinstance(route, Route), route
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {slug:path} is {slug} in OpenAPI
        if route.endpoint.__module__.startswith(DASHBOARD_MODULE):
            dashboard.add(path)
            continue
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                api.add((path, method.lower()))
    return api, dashboard


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_api_route_is_documented_and_nothing_else(
    document: dict[str, Any], tmp_path: Path
) -> None:
    # Given the routes of the app the server serves
    api, dashboard = served_routes(tmp_path)
    assert ("/v1/runs/{run_id}", "delete") in api and ("/fn/register", "post") in api
    # Then each API route and method is in the document, and the document invents none
    described = documented(document)
    assert api - described == set(), "routes served but not documented"
    assert described - api == set(), "routes documented but not served"
    # And the dashboard's pages are left out, as the description says
    assert dashboard and not dashboard & set(document["paths"])
    assert "dashboard" in document["info"]["description"]


def test_the_signing_key_is_required_where_the_middleware_requires_it(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["signingKey"] == schemes["signingKey"] | {"type": "http", "scheme": "bearer"}
    for path, method, operation in operations(document):
        signed = operation["security"] == [{"signingKey": []}]
        if path.startswith(SIGNED_PREFIXES) or path == "/fn/register":
            assert signed, f"{method} {path}"
            assert "401" in operation["responses"], f"{method} {path}"
        else:
            assert operation["security"] == [], f"{method} {path}"
    # The event key travels in the path: a required path parameter of the Event API
    [key] = document["paths"]["/e/{key}"]["post"]["parameters"][:1]
    assert key["name"] == "key" and key["in"] == "path" and key["required"] is True


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in the document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references are used: {pointer}"
    node: Any = document
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"$ref {pointer} does not resolve"
        node = node[part]
    return node


def test_the_document_is_structurally_valid_openapi_3_1(document: dict[str, Any]) -> None:
    # It is JSON, declares 3.1 and has the required top-level fields
    assert orjson.loads(orjson.dumps(document)) == document
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"] == __version__
    # Every $ref resolves
    refs = [node["$ref"] for node in walk(document) if "$ref" in node]
    assert refs
    for pointer in refs:
        resolve(document, pointer)
    # Every component schema is used
    used = {pointer.rsplit("/", 1)[1] for pointer in refs}
    assert set(document["components"]["schemas"]) - used == set(), "unused schemas"
    tags = {tag["name"] for tag in document["tags"]}
    schemes = set(document["components"]["securitySchemes"])
    for path, method, operation in operations(document):
        where = f"{method} {path}"
        assert path.startswith("/"), where
        # Every path parameter of the template is declared (required), and no other
        templated = set(re.findall(r"\{([^}]+)\}", path))
        parameters = operation.get("parameters", [])
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert declared == templated, where
        assert all(p["required"] is True for p in parameters if p["in"] == "path"), where
        keys = [(p["name"], p["in"]) for p in parameters]
        assert len(keys) == len(set(keys)), f"{where}: a parameter is declared twice"
        assert all(p["in"] in {"path", "query", "header", "cookie"} for p in parameters), where
        assert all("schema" in p for p in parameters), where
        # Responses: keyed by status code, each with a description; JSON content has a schema
        assert operation["responses"], where
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), f"{where}: {status}"
            assert response["description"], f"{where}: {status}"
            for media in response.get("content", {}).values():
                assert "schema" in media, f"{where}: {status}"
        body = operation.get("requestBody")
        if body is not None:
            assert body["content"]["application/json"]["schema"], where
        assert set(operation["tags"]) <= tags, where
        for requirement in operation["security"]:
            assert set(requirement) <= schemes, where
    # Every object schema requires only properties it has
    for schema in walk(document["components"]["schemas"]):
        if "required" in schema:
            assert set(schema["required"]) <= set(schema.get("properties", {})), schema
