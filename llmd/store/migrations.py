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
            id TEXT PRIMARY KEY,           -- the client's session id (the EasyVizAI API's /ws/chat/{session_id}/)
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
    (
        "0005_auth",
        """
        CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,              -- the key's first characters, shown in listings
            key_hash TEXT NOT NULL UNIQUE,     -- sha256 hex of the whole key; the key itself is never stored
            scope TEXT NOT NULL,               -- inference | admin
            models TEXT,                       -- JSON list of model names; NULL: every model
            created_at REAL NOT NULL,
            expires_at REAL,
            last_used_at REAL,
            revoked_at REAL
        );
        -- a name is unique among the keys in force; revoked keys keep theirs for the record
        CREATE UNIQUE INDEX api_keys_active_name ON api_keys(name) WHERE revoked_at IS NULL;
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,       -- argon2id, with its parameters and salt
            scope TEXT NOT NULL,               -- inference | admin
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_login_at REAL
        );
        """,
    ),
    (
        "0006_downloads",
        """
        -- One row per download task. The row plus the .partial file on disk are the
        -- truth after a crash: the partial file's length is where the transfer resumes.
        CREATE TABLE downloads (
            id TEXT PRIMARY KEY,               -- task_<hex>
            model_id TEXT NOT NULL,            -- hub id: repo id, or an Ollama name:tag
            source TEXT NOT NULL,              -- huggingface | ollama
            filename TEXT,                     -- the file asked for (NULL: picked by quantization)
            quantization TEXT,
            revision TEXT,                     -- the commit the files were resolved at
            status TEXT NOT NULL,              -- pending | downloading | paused | completed | failed | cancelled
            phase TEXT NOT NULL DEFAULT 'transfer',  -- transfer | register (files renamed, not yet registered)
            files TEXT NOT NULL DEFAULT '[]',  -- JSON: [{name, url, size, sha256, path}]
            downloaded_bytes INTEGER NOT NULL DEFAULT 0,
            total_bytes INTEGER NOT NULL DEFAULT 0,
            model_name TEXT,                   -- the registered model, once completed
            message TEXT,
            error_code TEXT,
            error TEXT,
            error_details TEXT,                -- JSON: e.g. the disk figures of INSUFFICIENT_STORAGE
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL
        );
        CREATE INDEX downloads_status ON downloads(status, created_at);
        """,
    ),
    (
        "0007_hub_catalog",
        """
        -- The hub catalogue cache: what search and info answer when the hub is unreachable.
        CREATE TABLE hub_models (
            source TEXT NOT NULL,              -- huggingface | ollama
            id TEXT NOT NULL,                  -- repo id or Ollama name
            data TEXT NOT NULL,                -- JSON: the item as the API shows it
            model_type TEXT,
            downloads INTEGER NOT NULL DEFAULT 0,
            likes INTEGER NOT NULL DEFAULT 0,
            trending INTEGER NOT NULL DEFAULT 0,
            detailed INTEGER NOT NULL DEFAULT 0,   -- 1 when data holds the full info (files, sizes)
            fetched_at REAL NOT NULL,
            PRIMARY KEY (source, id)
        );
        CREATE TABLE hub_searches (
            source TEXT NOT NULL,
            query TEXT NOT NULL,
            model_type TEXT NOT NULL DEFAULT '',
            ids TEXT NOT NULL,                 -- JSON list of ids, in the hub's order
            fetched_at REAL NOT NULL,
            PRIMARY KEY (source, query, model_type)
        );
        CREATE TABLE hub_favorites (
            source TEXT NOT NULL,
            id TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (source, id)
        );
        CREATE TABLE hub_syncs (
            source TEXT PRIMARY KEY,
            synced_at REAL NOT NULL,
            count INTEGER NOT NULL
        );
        """,
    ),
    (
        "0008_registry_fields",
        """
        ALTER TABLE models ADD COLUMN display_name TEXT;
        ALTER TABLE models ADD COLUMN description TEXT;
        ALTER TABLE models ADD COLUMN framework TEXT NOT NULL DEFAULT 'llama.cpp';  -- llama.cpp | vllm
        ALTER TABLE models ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
        ALTER TABLE models ADD COLUMN config TEXT NOT NULL DEFAULT '{}';                 -- JSON
        ALTER TABLE models ADD COLUMN resource_requirements TEXT NOT NULL DEFAULT '{}';  -- JSON
        ALTER TABLE models ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';                   -- JSON list
        -- performance_stats of one model read the request log by model
        CREATE INDEX request_log_model ON request_log(model, ts);
        """,
    ),
    (
        "0009_deployments",
        """
        -- One deployment row per model: its id ("deploy_<id>") stays stable across restarts.
        DELETE FROM deployments WHERE id NOT IN (SELECT MIN(id) FROM deployments GROUP BY model_id);
        DROP INDEX IF EXISTS deployments_model;
        CREATE UNIQUE INDEX deployments_model ON deployments(model_id);
        ALTER TABLE deployments ADD COLUMN port INTEGER;
        ALTER TABLE deployments ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE deployments ADD COLUMN last_used REAL;
        ALTER TABLE deployments ADD COLUMN started_at REAL;
        ALTER TABLE deployments ADD COLUMN stopped_at REAL;
        ALTER TABLE deployments ADD COLUMN stop_reason TEXT;     -- stopped | evicted | idle | shutdown | error
        ALTER TABLE deployments ADD COLUMN note TEXT;            -- e.g. why it was evicted
        ALTER TABLE deployments ADD COLUMN model_source TEXT;
        ALTER TABLE deployments ADD COLUMN gpu_memory_utilization REAL;
        ALTER TABLE deployments ADD COLUMN memory_bytes INTEGER;
        """,
    ),
    (
        "0010_metric_points",
        """
        -- The metrics history: one row per metric, subject and bucket, at each resolution (seconds per
        -- bucket; 0 = a raw sample). A sample and its rollups are written in one transaction.
        CREATE TABLE metric_points (
            resolution INTEGER NOT NULL,
            ts REAL NOT NULL,                 -- the bucket's start (a raw sample: its time)
            metric TEXT NOT NULL,             -- cpu_percent, memory_used_bytes, gpu_utilization, ...
            subject TEXT NOT NULL DEFAULT '', -- '' for the box; a deployment id; gpu0, ...
            avg REAL NOT NULL,
            min REAL NOT NULL,
            max REAL NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (resolution, metric, subject, ts)
        ) WITHOUT ROWID;
        CREATE INDEX metric_points_age ON metric_points(resolution, ts);
        """,
    ),
    (
        "0011_settings",
        """
        -- Settings changed at run time (PUT /api/config, llmctl config set): each wins over the config
        -- file, the environment and the command line until it is removed.
        CREATE TABLE settings_overrides (
            key TEXT PRIMARY KEY,             -- section.key, as in llmd.toml
            value TEXT NOT NULL,              -- JSON
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        "0012_alerts",
        """
        -- Alert rules made through the API (the built-in threshold rules come from [alerts] and are not
        -- stored). AUTOINCREMENT: a deleted rule's id (alert-<n>) is never given to a new rule, so the old
        -- rule's history and firing state are never taken for the new one's.
        CREATE TABLE alert_rules (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            condition TEXT NOT NULL,          -- canonical text: cpu_percent > 90 for 5m
            severity TEXT NOT NULL,           -- info | warning | critical
            enabled INTEGER NOT NULL,
            channels TEXT NOT NULL,           -- JSON list of journal, webhook, email
            repeat_interval_s REAL,           -- NULL: alerts.repeat_interval_s; 0: never again
            description TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        -- What each rule did: one row when it fired (again every repeat interval) and when it resolved.
        CREATE TABLE alert_events (
            id INTEGER PRIMARY KEY,
            rule_id TEXT NOT NULL,            -- alert-<n> or threshold-<key>; kept after the rule is deleted
            rule_name TEXT NOT NULL,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,              -- firing | resolved
            condition TEXT NOT NULL,
            value REAL,                       -- NULL: the metric had no data
            message TEXT NOT NULL,
            ts REAL NOT NULL,
            notified TEXT NOT NULL DEFAULT '{}'  -- JSON: channel -> ok | failed
        );
        CREATE INDEX alert_events_ts ON alert_events(ts);
        CREATE INDEX alert_events_rule ON alert_events(rule_id, ts);
        -- The rules that are firing, so that a restart keeps them firing without notifying them again.
        -- A table of its own rather than columns of alert_rules: the built-in rules have no row there,
        -- and a deleted rule must still be resolved. It keeps what the resolution needs to say.
        CREATE TABLE alert_state (
            rule_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,              -- firing
            since REAL NOT NULL,
            last_notified REAL,
            last_value REAL,
            rule_name TEXT NOT NULL,
            severity TEXT NOT NULL,
            condition TEXT NOT NULL,
            channels TEXT NOT NULL            -- JSON list
        );
        """,
    ),
    (
        "0013_responses",
        """
        -- The OpenAI Responses API's stored responses (store: true). A row holds every input item the
        -- model saw (with previous_response_id, the earlier turns' items too), so that continuing from
        -- it needs this row only, whatever was deleted since.
        CREATE TABLE responses (
            id TEXT PRIMARY KEY,              -- resp_<hex>
            created_at REAL NOT NULL,
            completed_at REAL,
            model TEXT NOT NULL,              -- the registry name of the model that answered
            status TEXT NOT NULL,             -- completed | incomplete | failed
            previous_response_id TEXT,        -- as given; that row may be gone since
            request TEXT NOT NULL,            -- JSON: instructions, input items, the request's other fields
            output TEXT NOT NULL,             -- JSON: the output items
            usage TEXT,                       -- JSON: input, output and cached tokens
            details TEXT                      -- JSON: why it is incomplete, or its error
        );
        CREATE INDEX responses_created ON responses(created_at);
        """,
    ),
]
