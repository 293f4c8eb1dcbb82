"""The core: the domain of llmd, and :class:`Core`, the one place where its components are wired.

The core knows nothing of HTTP. A dialect parses a request into core types,
calls one method of one component below, and renders what comes back. Each
component gets only what it uses (a repository of the store, another
component, a config section), never the whole core.

==============  ====================================================================
``fleet``       deployments: start, stop, restart, load, unload, placement, ports, keep-alive
``inference``   generations, batches and embeddings on the fleet's deployments
``models``      models as a whole: views, detail, create/update/delete, logs, lifecycle tasks
``sessions``    the WebSocket chat's conversations
``downloads``   resumable, verified downloads from a hub into the registry
``hub``         hub search, info, trending, categories, favourites, cached in SQLite
``monitor``     health, status, machine figures, process use, the Prometheus text
``auth``        keys, users, tokens, the request's principal
``streams``     open SSE streams and WebSockets, per client
``tasks``       background operations whose outcome can be read later
``history``     the metrics history: the box and the deployments sampled into SQLite on a timer
``settings``    settings changed at run time: validated, stored as overrides, applied or left for a restart
``alerts``      alert rules evaluated on each sample; firing and resolved events, history, notifications
``backups``     online backups of the database, and restores put in place at the next start
``responses``   the OpenAI Responses API's responses: generated from items, stored, continued, pruned
==============  ====================================================================
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from llmd.config import Config
from llmd.core.alert_channels import Channels
from llmd.core.alerts import Alerts
from llmd.core.auth import Auth
from llmd.core.background import Background
from llmd.core.backups import Backups
from llmd.core.downloads import DownloadManager
from llmd.core.engine.base import Engine
from llmd.core.events import EventBroker
from llmd.core.fleet import Fleet
from llmd.core.history import History
from llmd.core.hub import Hub
from llmd.core.inference import Inference
from llmd.core.metrics import Metrics
from llmd.core.modellog import ModelLogs
from llmd.core.models import Models
from llmd.core.monitor import Monitor
from llmd.core.registry import Registry
from llmd.core.requestlog import RequestLog
from llmd.core.responses import Responses
from llmd.core.sessions import ChatSessions
from llmd.core.settings import Settings
from llmd.core.streams import OpenStreams
from llmd.core.tasks import TaskTracker
from llmd.store import Store

log = logging.getLogger(__name__)

StatusHook = Callable[[str], None]


class Core:
    """The composition root: builds every component over one store and one engine, starts and stops them."""

    def __init__(self, config: Config, store: Store, engine: Engine, *,
                 on_status: StatusHook | None = None, reread: Callable[[], Config] | None = None,
                 on_restart: Callable[[], None] | None = None) -> None:
        self.config = config
        self.engine = engine
        # For wiring, the daemon and tests; components get their own repositories, and no
        # HTTP handler touches it (tests/unit/test_layers.py checks).
        self.store = store
        self.background = Background()
        self.events = EventBroker()
        self.metrics = Metrics()
        self.streams = OpenStreams(config.limits.max_streams_per_client)
        self.auth = Auth(config, store.auth)
        self.registry = Registry(store.models)
        self.logs = ModelLogs(config.state_dir / "logs", self.events)
        self.requests = RequestLog(store.requests, self.metrics, self.background)
        self.fleet = Fleet(config, engine, self.registry, store.deployments, auth=self.auth, logs=self.logs,
                           events=self.events, background=self.background, on_finish=self.requests.record,
                           on_status=on_status)
        self.inference = Inference(self.fleet, max_batch_size=config.server.max_batch_size,
                                   max_n=config.limits.max_n)
        self.sessions = ChatSessions(store.sessions, self.fleet, self.inference, self.background)
        self.tasks = TaskTracker(self.events)
        self.settings = Settings(config, store.settings, reread)
        self.backups = Backups(config.state_dir, store.backup_to, self.background, on_restart)
        self.settings.on_change(self._settings_applied)
        self.alerts = Alerts(config.alerts, store.alerts, self.events, self.background, Channels(config.alerts))
        self.responses = Responses(config.responses, store.responses, self.inference)
        self.history = History(config.monitor, store.metrics, self.fleet, self.background, config.models_dir,
                               self.requests, self.registry, events=self.events, alerts=self.alerts,
                               pruners=(self.responses.prune,))
        self.monitor = Monitor(config, engine.name, self.fleet, streams=self.streams, store_check=store.check,
                               background=self.background, auth=self.auth, metrics=self.metrics,
                               requests=self.requests, registry=self.registry, events=self.events,
                               alerts=self.alerts, history=self.history)
        self.models = Models(config, self.registry, self.fleet, logs=self.logs, requests=self.requests,
                             monitor=self.monitor, tasks=self.tasks)
        self.hub = Hub(config, store.hub, downloads_repo=store.downloads, registry=self.registry)
        self.downloads = DownloadManager(config, store.downloads, registry=self.registry, hub=self.hub,
                                         events=self.events, background=self.background)

    async def start(self) -> None:
        """Register bundled models, recover state, resume downloads, load the default model in the background."""
        self.events.bind(asyncio.get_running_loop())
        await self.settings.load()
        await self.alerts.load()  # rules that were firing stay firing, without a second notification
        if self.config.models.discover_bundled:
            await self.registry.sync_bundled()
        await self.registry.ensure_default_alias(self.config.models.default)
        await self.fleet.start()
        await self.downloads.start()  # finish interrupted registrations, resume interrupted downloads
        self.history.start()

    def _settings_applied(self, keys: set[str]) -> None:
        """Act on settings changed at run time that something must react to (others are read at use)."""
        if "log.level" in keys:
            logging.getLogger().setLevel(self.config.log.level.upper())
        if "monitor.interval_s" in keys:
            self.history.reschedule()

    async def shutdown(self) -> None:
        """Stop taking work, end open generations with a final event, unload models, flush the logs."""
        self.background.stopping = True
        await self.history.stop()
        await self.tasks.shutdown()
        await self.downloads.shutdown()  # partial files stay; the tasks resume on the next start
        await self.fleet.shutdown()
        # Let request-log and state writes that the stops queued finish.
        await self.background.drain(5)
        await self.logs.close()
