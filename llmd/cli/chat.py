"""``llmctl chat`` (interactive, streaming, with history) and ``llmctl generate``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import Client


def _stream_answer(client: Client, body: dict[str, Any], echo: bool) -> tuple[str, dict[str, Any], bool]:
    """Stream one chat answer; returns (text, usage, interrupted). Ctrl-C stops the answer only."""
    parts: list[str] = []
    usage: dict[str, Any] = {}
    events = client.stream("/v1/chat/completions", body)
    try:
        for event in events:
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    parts.append(piece)
                    if echo:
                        click.echo(piece, nl=False)
                        sys.stdout.flush()
    except KeyboardInterrupt:
        # Closing the stream disconnects; the daemon cancels the generation.
        events.close()
        return "".join(parts), usage, True
    return "".join(parts), usage, False


def _sampling(max_tokens: int | None, temperature: float | None, seed: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    if temperature is not None:
        out["temperature"] = temperature
    if seed is not None:
        out["seed"] = seed
    return out


sampling_options = [
    click.option("--max-tokens", type=int, help="longest answer, in tokens"),
    click.option("--temperature", type=float, help="0 (greedy) to 2"),
    click.option("--seed", type=int, help="sampling seed, for repeatable answers"),
]


def with_sampling(fn: Any) -> Any:
    """Add the sampling options to a command."""
    for opt in reversed(sampling_options):
        fn = opt(fn)
    return fn


@cli.command()
@click.argument("model", required=False, default="default")
@click.option("--system", help="a system prompt for the whole conversation")
@with_sampling
@json_option
@click.pass_context
def chat(ctx: click.Context, model: str, system: str | None, max_tokens: int | None,
         temperature: float | None, seed: int | None, as_json: bool) -> None:
    """Chat with MODEL (default: the default model). Ctrl-C stops an answer; Ctrl-D or /exit quits."""
    client = get_client(ctx)
    js = want_json(ctx, as_json)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("> " if interactive and not js else "")
        except (EOFError, KeyboardInterrupt):
            if interactive:
                click.echo("")
            return
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            history = history[:1] if system else []
            continue
        history.append({"role": "user", "content": line})
        body = {"model": model, "messages": history, "stream": True,
                "stream_options": {"include_usage": True}, **_sampling(max_tokens, temperature, seed)}
        text, usage, interrupted = _stream_answer(client, body, echo=not js)
        history.append({"role": "assistant", "content": text})
        if js:
            click.echo(json.dumps({"role": "assistant", "content": text, "usage": usage,
                                   "interrupted": interrupted}, ensure_ascii=False))
        else:
            click.echo(" [stopped]" if interrupted else "")


@cli.command()
@click.argument("prompt")
@click.option("--model", default="default", help="model name or alias")
@click.option("--raw", is_flag=True, help="complete the prompt as is, without the chat template")
@with_sampling
@json_option
@click.pass_context
def generate(ctx: click.Context, prompt: str, model: str, raw: bool, max_tokens: int | None,
             temperature: float | None, seed: int | None, as_json: bool) -> None:
    """Answer one PROMPT, streaming the text."""
    client = get_client(ctx)
    js = want_json(ctx, as_json)
    sampling = _sampling(max_tokens, temperature, seed)
    if raw:
        data = client.request("POST", "/v1/completions", json={"model": model, "prompt": prompt, **sampling})
        text, usage = data["choices"][0]["text"], data["usage"]
        if not js:
            click.echo(text)
    else:
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True,
                "stream_options": {"include_usage": True}, **sampling}
        text, usage, interrupted = _stream_answer(client, body, echo=not js)
        if not js:
            click.echo(" [stopped]" if interrupted else "")
    if js:
        click.echo(json.dumps({"text": text, "usage": usage}, ensure_ascii=False))
