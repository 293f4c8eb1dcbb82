"""The OpenAPI document, built from the dialects' route declarations, and its viewers.

Swagger UI and ReDoc are served from assets installed as a Python package
(``fastapi-offline``, installed without its dependencies only for its static
files), so the docs work on a box with no internet.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from llmd import __version__
from llmd.http.api import Dialect

_ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "application/javascript",
    "favicon.png": "image/png",
}


def asset_dir() -> Path | None:
    """Where the bundled Swagger UI / ReDoc files are, without importing their package."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "static"
    return path if path.is_dir() else None


def has_assets() -> bool:
    """True when the viewers' files are installed (checked without reading them)."""
    return asset_dir() is not None


def asset(name: str) -> tuple[bytes, str] | None:
    """The bytes and content type of one bundled asset, or ``None``."""
    base = asset_dir()
    if name not in _ASSETS or base is None or not (base / name).is_file():
        return None
    return (base / name).read_bytes(), _ASSETS[name]


def openapi_path(path: str) -> str:
    """Quart's ``/a/<path:b>`` becomes OpenAPI's ``/a/{b}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)


def _error_schema(dialect: Dialect) -> dict[str, Any]:
    shapes = {
        "openai": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
        "local": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
    }
    return shapes.get(dialect.name, {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}}}}})


def build_openapi(dialects: list[Dialect]) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every declared route."""
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for d in dialects:
        err_name = f"{d.name}_error"
        components[err_name] = _error_schema(d)
        for r in d.routes:
            if r.websocket:
                continue  # OpenAPI cannot describe WebSockets; docs/api.md does
            path = openapi_path(r.path)
            params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                      for n in re.findall(r"{(\w+)}", path)]
            if r.query is not None:
                schema = r.query.model_json_schema()
                for name, prop in schema.get("properties", {}).items():
                    params.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                                   "schema": prop})
            for method in r.methods:
                ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
                if r.sse:
                    ok["text/event-stream"] = {"schema": {"type": "string"}}
                if r.text:
                    ok = {"text/html": {"schema": {"type": "string"}}}
                op: dict[str, Any] = {
                    "tags": [d.title], "summary": r.summary, "description": r.description,
                    "operationId": f"{d.name}_{method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}",
                    "responses": {
                        "200": {"description": "OK", "content": ok},
                        "default": {"description": "Error, in this dialect's envelope",
                                    "content": {"application/json": {
                                        "schema": {"$ref": f"#/components/schemas/{err_name}"}}}},
                    },
                }
                if params:
                    op["parameters"] = params
                if r.body is not None:
                    # Dialects reuse class names (GenerateBody, ChatMessageIn): prefix with the dialect.
                    schema = r.body.model_json_schema(ref_template="#/components/schemas/" + d.name + "_{model}")
                    for name, sub in schema.pop("$defs", {}).items():
                        components[f"{d.name}_{name}"] = sub
                    body_name = f"{d.name}_{r.body.__name__}"
                    components[body_name] = schema
                    op["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{body_name}"}}}}
                if r.public:
                    op["security"] = []
                paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "llmd", "version": __version__,
                 "description": "One LLM daemon, several API dialects. See docs/api.md."},
        "paths": paths,
        "components": {"schemas": components},
    }


SWAGGER_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>llmd API - Swagger UI</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""

REDOC_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>llmd API - ReDoc</title></head>
<body><redoc spec-url="/openapi.json"></redoc>
<script src="/docs/assets/redoc.standalone.js"></script>
</body></html>"""

NO_ASSETS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>llmd API</title></head>
<body><p>The documentation viewer's files are not installed
(<code>pip install --no-deps fastapi-offline</code>).
The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</p></body></html>"""
