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


# -- what a schema cannot say: values that exist, and which answer feeds which request ---------------
#
# A schema gives a request's shape, not the values a daemon has: a model name, a deployment, a
# download task. The examples name what every daemon has (``default`` is always the default model's
# alias, ``deploy_1`` its deployment on a fresh state directory) and the links say which answer
# gives the id of the next request (create a model, then read, start, stop and delete it). A reader
# sees the workflows; a client generator, schemathesis' stateful phase among them, gets past the
# 404s. An operation that stops, deletes or revokes what it names takes its id from a link only,
# never from an example: following the examples must not stop the default model.

# A Hugging Face repository, as in docs/api-llm-manager.md (scripts/fuzz's stand-in hub serves it).
HUB_REPO = "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF"

# "METHOD /openapi/path" -> path parameter -> an example value.
PATH_EXAMPLES: dict[str, dict[str, str]] = {
    **{f"{op} /api/models/{{model_id}}{tail}": {"model_id": "default"}
       for op, tail in (("GET", ""), ("GET", "/logs"), ("POST", "/generate"), ("POST", "/chat/completions"),
                        ("POST", "/embeddings"))},
    "GET /v1/models/{model_id}": {"model_id": "default"},
    "GET /api/v1/llm/models/{model_key}/": {"model_key": "default"},
    "POST /api/v1/llm/models/{model_key}/load/": {"model_key": "default"},
    "POST /api/v1/models/{model_name}/load": {"model_name": "default"},
    **{f"GET /api/deployments/{{deployment_id}}{tail}": {"deployment_id": "deploy_1"}
       for tail in ("", "/health", "/logs", "/model-info")},
    "POST /api/chat/{deployment_id}": {"deployment_id": "deploy_1"},
    "POST /api/completions/{deployment_id}": {"deployment_id": "deploy_1"},
    "GET /api/models/{hub_id}/info": {"hub_id": HUB_REPO},
    "POST /api/models/{hub_id}/favorite": {"hub_id": HUB_REPO},
    "DELETE /api/models/{hub_id}/favorite": {"hub_id": HUB_REPO},
    "GET /docs/assets/{name}": {"name": "swagger-ui.css"},
    **{f"{op} /api/config/alerts/{{alert_id}}{tail}": {"alert_id": "threshold-gpu_utilization_high"}
       for op, tail in (("GET", ""), ("POST", "/enable"), ("POST", "/disable"))},
}

# "METHOD /openapi/path" -> an example body, for the bodies declared next to their routes (the
# models of the */schemas.py modules carry theirs in ``json_schema_extra``).
BODY_EXAMPLES: dict[str, dict[str, Any]] = {
    "POST /api/downloads/start": {"model_id": HUB_REPO, "source": "huggingface"},
    "POST /api/deployments/start": {"model_id": "default"},
    "POST /llmd/v1/keys": {"name": "ci-runner", "scope": "inference", "expires_in_s": 86400},
    "POST /llmd/v1/users": {"username": "alice", "password": "correct horse battery", "scope": "inference"},
    "POST /api/auth/token": {"username": "alice", "password": "correct horse battery"},
    "POST /llmd/v1/models": {"path": "/var/lib/llmd/models/tinyllama-1.1b-chat.Q4_K_M.gguf", "name": "tinyllama"},
}

# A link: (name, target "METHOD /openapi/path", parameters, request body or None). Parameter names
# carry their location ("path.model_id"); values are OpenAPI runtime expressions. A task id is
# "task_<key>" and the routes spell "task_" out, so its key is cut out with schemathesis' regex
# extractor ("#regex:", one group), which other tools read as part of the pointer.
Link = tuple[str, str, dict[str, str], Any]

_MODEL = "/api/models/{model_id}"
_TASK = "/api/downloads/task_{task_key}"
_DEPLOYMENT = "/api/deployments/{deployment_id}"
_HUB = "/api/models/{hub_id}"
_ALERT = "/api/config/alerts/{alert_id}"


def _model_links(expr: str, *, destructive: bool) -> list[Link]:
    """Links to the routes of one model of the LLM Inference Service API (its id from ``expr``)."""
    p = {"path.model_id": expr}
    links: list[Link] = [("get", f"GET {_MODEL}", p, None), ("logs", f"GET {_MODEL}/logs", p, None),
                         ("generate", f"POST {_MODEL}/generate", p, None),
                         ("chat", f"POST {_MODEL}/chat/completions", p, None),
                         ("embeddings", f"POST {_MODEL}/embeddings", p, None)]
    if destructive:
        links += [("update", f"PUT {_MODEL}", p, None), ("start", f"POST {_MODEL}/start", p, None),
                  ("stop", f"POST {_MODEL}/stop", p, None), ("restart", f"POST {_MODEL}/restart", p, None),
                  ("delete", f"DELETE {_MODEL}", p, None)]
    return links


def _task_links(expr: str, names: tuple[str, ...]) -> list[Link]:
    """Links to the routes of one download task (its key from ``expr``)."""
    targets = {"get": f"GET {_TASK}", "events": f"GET {_TASK}/events", "pause": f"PUT {_TASK}/pause",
               "resume": f"PUT {_TASK}/resume", "cancel": f"PUT {_TASK}/cancel", "delete": f"DELETE {_TASK}"}
    return [(n, targets[n], {"path.task_key": expr}, None) for n in names]


def _deployment_links(expr: str, *, destructive: bool) -> list[Link]:
    """Links to the routes of one deployment of the LLM Manager API (its id from ``expr``)."""
    p = {"path.deployment_id": expr}
    links: list[Link] = [("get", f"GET {_DEPLOYMENT}", p, None), ("health", f"GET {_DEPLOYMENT}/health", p, None),
                         ("logs", f"GET {_DEPLOYMENT}/logs", p, None),
                         ("model_info", f"GET {_DEPLOYMENT}/model-info", p, None),
                         ("chat", "POST /api/chat/{deployment_id}", p, None),
                         ("completions", "POST /api/completions/{deployment_id}", p, None)]
    if destructive:
        links += [("stop", f"PUT {_DEPLOYMENT}/stop", p, None), ("restart", f"PUT {_DEPLOYMENT}/restart", p, None),
                  ("delete", f"DELETE {_DEPLOYMENT}", p, None)]
    return links


def _hub_links(expr: str) -> list[Link]:
    """Links to one hub repository: its details, favourite, and a download of it."""
    p = {"path.hub_id": expr}
    return [("info", f"GET {_HUB}/info", p, None), ("favorite", f"POST {_HUB}/favorite", p, None),
            ("unfavorite", f"DELETE {_HUB}/favorite", p, None),
            ("download", "POST /api/downloads/start", {}, {"model_id": expr})]


_TASK_KEY = "#regex:^task_(.+)$"
_SAME_TASK = "$request.path.task_key"
_SAME_MODEL = "$request.path.model_id"
_SAME_DEPLOYMENT = "$request.path.deployment_id"
_LIFECYCLE_TASK: Link = ("task", "GET /api/tasks/{task_id}", {"path.task_id": "$response.body#/task_id"}, None)

# "METHOD /openapi/path" of the source -> its links (followed from any 2xx answer).
LINKS: dict[str, list[Link]] = {
    # LLM Inference Service API: a model's life, and its lifecycle tasks.
    "POST /api/models": [
        *_model_links("$response.body#/id", destructive=True),
        ("openai", "GET /v1/models/{model_id}", {"path.model_id": "$response.body#/name"}, None),
        ("deploy", "POST /api/deployments/start", {}, {"model_id": "$response.body#/name"}),
    ],
    "GET /api/models": [
        *_model_links("$response.body#/items/0/id", destructive=False),
        # Another model from the same file; the name only has to be new (a 409 otherwise).
        ("copy", "POST /api/models", {}, {"name": r"copy-{$response.header.Date#regex:(\d\d:\d\d:\d\d)}",
                                          "config": {"model_path": "$response.body#/items/0/config/model_path"}}),
    ],
    f"POST {_MODEL}/start": [_LIFECYCLE_TASK, *_model_links(_SAME_MODEL, destructive=False),
                             ("stop", f"POST {_MODEL}/stop", {"path.model_id": _SAME_MODEL}, None),
                             ("restart", f"POST {_MODEL}/restart", {"path.model_id": _SAME_MODEL}, None)],
    f"POST {_MODEL}/stop": [_LIFECYCLE_TASK, ("start", f"POST {_MODEL}/start", {"path.model_id": _SAME_MODEL}, None),
                            ("delete", f"DELETE {_MODEL}", {"path.model_id": _SAME_MODEL}, None)],
    f"POST {_MODEL}/restart": [_LIFECYCLE_TASK, ("stop", f"POST {_MODEL}/stop", {"path.model_id": _SAME_MODEL}, None)],
    # Alert rules: one rule's routes from its creation and from the list.
    "POST /api/config/alerts": [(name, f"{method} {_ALERT}{tail}", {"path.alert_id": "$response.body#/id"}, None)
                                for name, method, tail in (("get", "GET", ""), ("update", "PUT", ""),
                                                           ("disable", "POST", "/disable"),
                                                           ("enable", "POST", "/enable"), ("delete", "DELETE", ""))],
    "GET /api/config/alerts": [("get", f"GET {_ALERT}", {"path.alert_id": "$response.body#/items/0/id"}, None),
                               ("history", "GET /api/config/alerts/history",
                                {"query.alert_id": "$response.body#/items/0/id"}, None)],
    # Admin API: a registered file, keys and users.
    "POST /llmd/v1/models": _model_links("$response.body#/model/id", destructive=True),
    "POST /llmd/v1/keys": [
        ("list", "GET /llmd/v1/keys", {}, None),
        ("revoke", "DELETE /llmd/v1/keys/{key_ref}", {"path.key_ref": "$response.body#/key/id"}, None),
        ("revoke_by_name", "DELETE /llmd/v1/keys/{key_ref}", {"path.key_ref": "$response.body#/key/name"}, None),
    ],
    "POST /llmd/v1/users": [
        ("token", "POST /api/auth/token", {},
         {"username": "$request.body#/username", "password": "$request.body#/password"}),
        ("remove", "DELETE /llmd/v1/users/{username}", {"path.username": "$request.body#/username"}, None),
    ],
    # LLM Manager API: downloads, deployments, the hub.
    "POST /api/downloads/start": _task_links("$response.body#/data/task/id" + _TASK_KEY,
                                             ("get", "events", "pause", "resume", "cancel", "delete")),
    "GET /api/downloads/list": _task_links("$response.body#/data/items/0/id" + _TASK_KEY, ("get", "events")),
    f"PUT {_TASK}/pause": _task_links(_SAME_TASK, ("resume", "cancel", "get")),
    f"PUT {_TASK}/resume": _task_links(_SAME_TASK, ("pause", "cancel", "get")),
    f"PUT {_TASK}/cancel": _task_links(_SAME_TASK, ("resume", "delete", "get")),
    "POST /api/deployments/start": _deployment_links("$response.body#/data/deployment_id", destructive=True),
    "GET /api/deployments/list": _deployment_links("$response.body#/data/items/0/deployment_id", destructive=False),
    f"PUT {_DEPLOYMENT}/stop": [
        ("restart", f"PUT {_DEPLOYMENT}/restart", {"path.deployment_id": _SAME_DEPLOYMENT}, None),
        ("delete", f"DELETE {_DEPLOYMENT}", {"path.deployment_id": _SAME_DEPLOYMENT}, None),
    ],
    "GET /api/models/search": _hub_links("$response.body#/data/items/0/id"),
    "GET /api/models/trending": _hub_links("$response.body#/data/items/0/id"),
    f"POST {_HUB}/favorite": [("info", f"GET {_HUB}/info", {"path.hub_id": "$request.path.hub_id"}, None),
                              ("unfavorite", f"DELETE {_HUB}/favorite", {"path.hub_id": "$request.path.hub_id"}, None)],
    # The Responses API: a stored response's routes, and a response that continues it.
    "POST /v1/responses": [
        *((name, f"{method} /v1/responses/resp_{{response_key}}{tail}",
           {"path.response_key": "$response.body#/id#regex:^resp_(.+)$"}, None)
          for name, method, tail in (("get", "GET", ""), ("input_items", "GET", "/input_items"),
                                     ("delete", "DELETE", ""))),
        ("continue", "POST /v1/responses", {}, {"model": "$response.body#/model", "input": "And then?",
                                                "previous_response_id": "$response.body#/id"}),
    ],
    # The model lists of the other APIs, to one of their models.
    "GET /v1/models": [("get", "GET /v1/models/{model_id}", {"path.model_id": "$response.body#/data/0/id"}, None)],
    "GET /api/v1/llm/models/": [
        ("get", "GET /api/v1/llm/models/{model_key}/", {"path.model_key": "$response.body#/available_models/0"}, None),
    ],
    "POST /api/v1/llm/models/{model_key}/load/": [
        ("unload", "POST /api/v1/llm/models/{model_key}/unload/", {"path.model_key": "$request.path.model_key"}, None),
    ],
    "GET /api/v1/models": [
        ("load", "POST /api/v1/models/{model_name}/load", {"path.model_name": "$response.body#/models/0/name"}, None),
    ],
}


def _add_links(paths: dict[str, Any], operation_ids: dict[str, str]) -> None:
    """Put :data:`LINKS` on their sources' 2xx answers; a source or target that is not declared is an error
    (as is an example for an operation that is not, so that a renamed route cannot lose its examples)."""
    for key in (*PATH_EXAMPLES, *BODY_EXAMPLES):
        if key not in operation_ids:
            raise ValueError(f"OpenAPI examples: no operation {key}")
    for source, links in LINKS.items():
        method, path = source.split(" ", 1)
        if source not in operation_ids:
            raise ValueError(f"OpenAPI links: no operation {source}")
        out: dict[str, Any] = {}
        for name, target, parameters, body in links:
            if target not in operation_ids:
                raise ValueError(f"OpenAPI link {source} -> {name}: no operation {target}")
            link: dict[str, Any] = {"operationId": operation_ids[target]}
            if parameters:
                link["parameters"] = parameters
            if body is not None:
                link["requestBody"] = body
            out[name] = link
        paths[path][method.lower()]["responses"]["2XX"]["links"] = out


def _path_params(path: str) -> list[dict[str, Any]]:
    """OpenAPI parameters of a werkzeug rule such as ``/a/<path:b>/<int:c>``."""
    out = []
    for conv, name in re.findall(r"<(?:(\w+):)?(\w+)>", path):
        out.append({"name": name, "in": "path", "required": True,
                    "schema": dict(_CONVERTERS.get(conv or "string", _CONVERTERS["string"]))})
    return out


def _with_example(param: dict[str, Any], examples: dict[str, str]) -> dict[str, Any]:
    """``param`` with its example from ``examples`` (by name), if there is one."""
    if param["in"] == "path" and param["name"] in examples:
        return {**param, "example": examples[param["name"]]}
    return param


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
    operation_ids: dict[str, str] = {}  # "METHOD /path" -> operationId, for the links
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
                key = f"{method} {path}"
                if params:
                    op["parameters"] = [_with_example(p, PATH_EXAMPLES.get(key, {})) for p in params]
                if r.body is not None:
                    media: dict[str, Any] = {"schema": _model_schema(r.body, d.name, components)}
                    if key in BODY_EXAMPLES:
                        media["examples"] = {"example": {"value": BODY_EXAMPLES[key]}}
                    op["requestBody"] = {"required": True, "content": {"application/json": media}}
                if r.auth == "public":
                    op["security"] = []
                paths.setdefault(path, {})[method.lower()] = op
                operation_ids[key] = op["operationId"]
    _add_links(paths, operation_ids)
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
