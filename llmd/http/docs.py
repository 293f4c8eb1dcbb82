"""The OpenAPI document, built from the dialects' route declarations, and its viewers.

Swagger UI and ReDoc are served from assets installed as a Python package
(``fastapi-offline``, installed without its dependencies only for its static
files), so the docs work on a box with no internet.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from pathlib import Path
from typing import Any

from quart import Response, jsonify

from llmd import __version__
from llmd.errors import NotFoundError
from llmd.http.routing import Dialect

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


# werkzeug converters -> the schema of the path parameter
_CONVERTERS = {"int": {"type": "integer", "minimum": 0}, "float": {"type": "number"},
               "path": {"type": "string", "minLength": 1}, "string": {"type": "string", "minLength": 1,
                                                                       "pattern": "^[^/]+$"}}
_CONVERTERS["default"] = _CONVERTERS["string"]

# One Server-Sent Event as a parsed event (what the data line carries is each dialect's format, docs/api.md).
SSE_EVENT = {"type": "object", "properties": {"event": {"type": "string"}, "data": {"type": "string"},
                                              "id": {"type": "string"}, "retry": {"type": "integer"}}}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "An API key (llmctl keys create) or a token from POST /api/auth/token"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key"},
}


def _path_params(path: str) -> list[dict[str, Any]]:
    """OpenAPI parameters of a werkzeug rule such as ``/a/<path:b>/<int:c>``."""
    out = []
    for conv, name in re.findall(r"<(?:(\w+):)?(\w+)>", path):
        out.append({"name": name, "in": "path", "required": True,
                    "schema": dict(_CONVERTERS.get(conv or "string", _CONVERTERS["string"]))})
    return out


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with its local ``$ref``s replaced by their definitions (query parameters stand alone)."""
    if isinstance(schema, dict):
        if "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
            return _inline_refs(defs[schema["$ref"].split("/")[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def _model_schema(model: Any, dialect: str, components: dict[str, Any]) -> dict[str, Any]:
    """A ``$ref`` to ``model``'s schema, registered (with its sub-models) under the dialect's prefix."""
    # Dialects reuse class names (GenerateBody, ChatMessageIn): prefix with the dialect.
    schema = model.model_json_schema(ref_template="#/components/schemas/" + dialect + "_{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[f"{dialect}_{name}"] = sub
    name = f"{dialect}_{model.__name__}"
    components[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def build_openapi(dialects: list[Dialect]) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every declared route.

    Each operation lists its path and query parameters and its JSON body,
    its success answer (with the response model where one is declared),
    and its errors in the dialect's envelope; ``security`` says which
    credentials it takes (none for public routes; docs/security.md).
    """
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for d in dialects:
        err_name = f"{d.name}_error"
        components[err_name] = d.error_schema
        for r in d.routes:
            if r.websocket:
                continue  # OpenAPI cannot describe WebSockets; docs/api.md does
            path = openapi_path(r.path)
            params = _path_params(r.path)
            if r.query is not None:
                schema = r.query.model_json_schema()
                defs = schema.get("$defs", {})
                for name, prop in schema.get("properties", {}).items():
                    params.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                                   "schema": _inline_refs(prop, defs)})
            for method in r.methods:
                ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
                if r.response is not None:
                    ok = {"application/json": {"schema": _model_schema(r.response, d.name, components)}}
                if r.sse:
                    ok["text/event-stream"] = {"schema": SSE_EVENT}
                if r.text:
                    ok = {"text/plain" if "metrics" in path else "text/html": {"schema": {"type": "string"}}}
                error = {"description": "Error, in this dialect's envelope", "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{err_name}"}}}}
                responses: dict[str, Any] = {"200": {"description": "OK", "content": ok}}
                if not r.text:
                    # 201 (created), 202 (accepted) and friends carry the same kind of body as 200.
                    responses["2XX"] = {"description": "Success", "content": ok}
                responses["default"] = error
                op: dict[str, Any] = {
                    "tags": [d.title], "summary": r.summary, "description": r.description,
                    "operationId": f"{d.name}_{method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}",
                    "responses": responses,
                    "x-llmd-auth": r.auth,
                }
                if params:
                    op["parameters"] = params
                if r.body is not None:
                    op["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": _model_schema(r.body, d.name, components)}}}
                if r.auth == "public":
                    op["security"] = []
                paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "llmd", "version": __version__,
                 "description": "One LLM daemon, several APIs over one core: " +
                                ", ".join(d.title for d in dialects if d.name != "docs") + ". See docs/api.md."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
        "security": [{"bearer": []}, {"apiKey": []}],
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


def docs_dialect(fallback: Dialect, dialects: list[Dialect]) -> Dialect:
    """The documentation's own routes: the OpenAPI document, Swagger UI, ReDoc and their files.

    Their errors come in ``fallback``'s envelope (the owner of paths nobody claims).
    """
    d = Dialect("docs", "Documentation", fallback.render_error, fallback.error_schema,
                paths=("/docs", "/redoc", "/openapi.json"), prefixes=("/docs/",))
    spec: dict[str, Any] = {}

    @d.route("/openapi.json", summary="The OpenAPI document", auth="public")
    async def openapi_json() -> Any:
        """Generated from the routes' declarations."""
        if not spec:
            spec.update(build_openapi(dialects))
        return jsonify(spec)

    @d.route("/docs", summary="Swagger UI", text=True, auth="public")
    async def docs() -> Any:
        """Interactive documentation, served with no internet access."""
        return Response(SWAGGER_HTML if has_assets() else NO_ASSETS_HTML, content_type="text/html")

    @d.route("/redoc", summary="ReDoc", text=True, auth="public")
    async def redoc() -> Any:
        """Reference documentation, served with no internet access."""
        return Response(REDOC_HTML if has_assets() else NO_ASSETS_HTML, content_type="text/html")

    @d.route("/docs/assets/<name>", summary="Documentation assets", text=True, auth="public")
    async def docs_asset(name: str) -> Any:
        """Swagger UI and ReDoc files."""
        found = await asyncio.to_thread(asset, name)  # up to 1.5 MB from disk: off the loop
        if found is None:
            raise NotFoundError(f"no documentation asset '{name}'")
        data, ctype = found
        resp = Response(data, content_type=ctype)
        resp.headers["Cache-Control"] = "public, max-age=86400"
        return resp

    return d
