"""Constrained generation: GBNF grammars, and JSON (schemas) turned into GBNF.

The conversion itself is llama-cpp-python's (``llama_cpp.llama_grammar``); the
grammar then runs in C as the first sampler of the request's chain.
"""

from __future__ import annotations

import json
from typing import Any

from llmd.errors import ValidationError


def json_grammar(schema: dict[str, Any] | None = None, *, field: str = "response_format") -> str:
    """GBNF for any JSON object (``schema`` is None), or for values of a JSON schema."""
    from llama_cpp import llama_grammar  # deferred: importing loads llama.cpp

    if schema is None:
        return llama_grammar.JSON_GBNF
    try:
        return llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds; all mean "bad schema"
        raise ValidationError(f"{field}: this JSON schema cannot be turned into a grammar: {exc}",
                              field=field) from None
