"""Quick API checks on a FakeEngine."""

from llmd.http import create_app


async def test_chat_nonstream(fake_core):
    app = create_app(fake_core)
    client = app.test_client()
    r = await client.post("/v1/chat/completions",
                          json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, await r.get_data()
    body = await r.get_json()
    assert body["choices"][0]["message"]["content"] == "Hello from the fake engine."
