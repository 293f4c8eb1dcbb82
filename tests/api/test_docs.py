"""/openapi.json, /docs and /redoc: generated from the route declarations, served with no internet."""

from __future__ import annotations

import json
import re

import pytest

from llmd import __version__
from llmd.http import create_app
from llmd.http.docs import openapi_path


@pytest.fixture
def app(fake_core):
    return create_app(fake_core)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
async def spec(client):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    return json.loads(await r.get_data(as_text=True))


def _resolve(spec: dict, ref: str) -> dict:
    assert ref.startswith("#/components/schemas/"), ref
    name = ref.rsplit("/", 1)[-1]
    assert name in spec["components"]["schemas"], f"dangling $ref {ref}"
    return spec["components"]["schemas"][name]


def _all_refs(obj) -> list[str]:
    if isinstance(obj, dict):
        out = [obj["$ref"]] if isinstance(obj.get("$ref"), str) else []
        for v in obj.values():
            out += _all_refs(v)
        return out
    if isinstance(obj, list):
        return [r for v in obj for r in _all_refs(v)]
    return []


@pytest.mark.parametrize("path,expected", [
    ("/v1/models/<path:model_id>", "/v1/models/{model_id}"),
    ("/docs/assets/<name>", "/docs/assets/{name}"),
    ("/api/models/<string:a>/x/<int:b>", "/api/models/{a}/x/{b}"),
    ("/health", "/health"),
])
def test_openapi_path(path, expected):
    assert openapi_path(path) == expected


async def test_openapi_document_shape(spec):
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "llmd"
    assert spec["info"]["version"] == __version__
    assert isinstance(spec["paths"], dict) and spec["paths"]
    assert isinstance(spec["components"]["schemas"], dict)
    # every $ref anywhere in the document resolves
    for ref in _all_refs(spec):
        _resolve(spec, ref)
    op_ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(op_ids) == len(set(op_ids)), "operationIds must be unique"


async def test_every_declared_route_is_documented(app, spec):
    routes = [(d, r) for d in app.extensions["llmd_dialects"] for r in d.routes]
    assert len(routes) >= 12
    for d, r in routes:
        path = openapi_path(r.path)
        if getattr(r, "websocket", False):
            continue  # OpenAPI has no operations for WebSocket routes
        assert "<" not in path and ">" not in path
        assert path in spec["paths"], f"{r.path} is missing from /openapi.json"
        for method in r.methods:
            if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue  # a WebSocket route: OpenAPI has no operation for it
            op = spec["paths"][path].get(method.lower())
            assert op is not None, f"{method} {path} is missing"
            assert op["summary"] == r.summary
            assert d.title in op["tags"]
            assert "200" in op["responses"] and "default" in op["responses"]
            err_ref = op["responses"]["default"]["content"]["application/json"]["schema"]["$ref"]
            _resolve(spec, err_ref)
            for name in re.findall(r"{(\w+)}", path):
                params = {p["name"]: p for p in op.get("parameters", [])}
                assert params[name]["in"] == "path" and params[name]["required"] is True
            if r.body is None:
                assert "requestBody" not in op
                continue
            body = op["requestBody"]
            assert body["required"] is True
            schema = _resolve(spec, body["content"]["application/json"]["schema"]["$ref"])
            model_schema = r.body.model_json_schema()
            assert set(schema["properties"]) == set(model_schema["properties"])
            assert set(schema.get("required", [])) == set(model_schema.get("required", []))
            if r.sse:
                assert "text/event-stream" in op["responses"]["200"]["content"]


async def test_documented_ranges(spec):
    gen = _resolve(spec, spec["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]
                   ["schema"]["$ref"])
    props = gen["properties"]

    def bounds(prop):
        opt = next(o for o in prop.get("anyOf", [prop]) if o.get("type") != "null")
        return opt.get("minimum"), opt.get("maximum")

    assert bounds(props["temperature"]) == (0, 2)
    assert bounds(props["max_tokens"]) == (1, 4096)
    assert bounds(props["top_p"]) == (0, 1)
    assert bounds(props["top_k"]) == (1, 100)
    assert bounds(props["repeat_penalty"]) == (1, 2)
    assert props["prompt"]["minLength"] == 1
    assert props["stream"]["default"] is True
    assert gen["required"] == ["prompt"]


async def test_error_envelopes_are_documented(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["openai_error"]["properties"]["error"]["required"] == ["message", "type", "code"]
    assert schemas["llama_local_error"]["required"] == ["detail"]
    assert "error" in schemas["admin_error"]["properties"]


async def test_openapi_is_cached_and_stable(client, spec):
    again = json.loads(await (await client.get("/openapi.json")).get_data(as_text=True))
    assert again == spec


_URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)


@pytest.mark.parametrize("page,needs", [
    ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
    ("/redoc", ["redoc.standalone.js"]),
])
async def test_viewers_use_local_assets_only(client, page, needs):
    r = await client.get(page)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    html = await r.get_data(as_text=True)
    assert "<html" in html.lower()
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    urls = _URL.findall(html)
    assert urls
    for url in urls:
        assert url.startswith("/docs/assets/") or url == "/openapi.json", url
    for name in needs:
        assert f"/docs/assets/{name}" in urls
    assert "/openapi.json" in html


@pytest.mark.parametrize("name,ctype", [
    ("swagger-ui-bundle.js", "application/javascript"),
    ("swagger-ui.css", "text/css"),
    ("redoc.standalone.js", "application/javascript"),
])
async def test_assets_are_served(client, name, ctype):
    r = await client.get(f"/docs/assets/{name}")
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == ctype
    data = await r.get_data()
    assert len(data) > 1000
    assert "max-age" in r.headers.get("Cache-Control", "")


async def test_assets_are_self_contained(client):
    # the bundles must not pull anything from the internet either: no remote
    # stylesheet or script is loaded by the CSS
    css = await (await client.get("/docs/assets/swagger-ui.css")).get_data(as_text=True)
    assert not re.search(r"@import\s+url\(\s*['\"]?https?://", css)


@pytest.mark.parametrize("name", ["nope.js", "..%2F..%2Fetc%2Fpasswd", "swagger-ui.css.map"])
async def test_unknown_asset_is_404(client, name):
    r = await client.get(f"/docs/assets/{name}")
    assert r.status_code == 404
    body = json.loads(await r.get_data(as_text=True))
    assert set(body) == {"detail"}


async def test_docs_without_assets_package(client, monkeypatch):
    import llmd.http.docs as docs

    monkeypatch.setattr(docs, "asset_dir", lambda: None)
    r = await client.get("/docs")
    assert r.status_code == 200
    html = await r.get_data(as_text=True)
    assert "/openapi.json" in html and "https://" not in html
    assert "fastapi-offline" in html  # says what to install
    assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 404
