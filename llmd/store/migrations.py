"""Named, ordered schema migrations.

A migration is applied once, in its own transaction, together with the row in
``schema_migrations`` that records it, so a crash never leaves a half-applied
migration behind. Never edit a migration that has shipped: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_models",
        """
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,            -- bundled | local | hf | ollama
            path TEXT NOT NULL,
            format TEXT NOT NULL DEFAULT 'gguf',
            architecture TEXT,
            context_length INTEGER,
            quantization TEXT,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            chat_template TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',   -- JSON
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE model_aliases (
            alias TEXT PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE
        );
        """,
    ),
    (
        "0002_deployments",
        """
        CREATE TABLE deployments (
            id INTEGER PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            state TEXT NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',   -- JSON: n_ctx, n_threads, ...
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX deployments_model ON deployments(model_id);
        """,
    ),
    (
        "0003_request_log",
        """
        CREATE TABLE request_log (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            dialect TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            model TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            ttft_ms REAL,
            duration_ms REAL,
            status TEXT NOT NULL,          -- ok | length | cancelled | error | shutdown
            error TEXT
        );
        CREATE INDEX request_log_ts ON request_log(ts);
        """,
    ),
    (
        "0004_chat_sessions",
        """
        CREATE TABLE chat_sessions (
            id TEXT PRIMARY KEY,           -- the client's session id (seed 000's /ws/chat/{session_id}/)
            model TEXT,                    -- the session's current model (registry name); NULL: the default
            system_prompt TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE chat_messages (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL,            -- user | assistant
            content TEXT NOT NULL,
            model TEXT,
            status TEXT NOT NULL DEFAULT 'ok',  -- ok | length | cancelled | error | shutdown
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            created_at REAL NOT NULL
        );
        CREATE INDEX chat_messages_session ON chat_messages(session_id, id);
        """,
    ),
    # -- 0005_auth (api keys, users) goes here --
    # -- 0006_downloads goes here --
    # -- 0007_hub_catalog goes here --
    # -- 0008_registry_fields (seed 002 model fields) goes here --
    # -- 0009_deployments (ids, port, pinned, last used) goes here --
]
