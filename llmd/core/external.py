"""External engines: a deployment served by a supervised OpenAI-compatible server process (vLLM).

Placeholder: the class below fixes the interface Core relies on; its body is
being written.
"""

from __future__ import annotations

from typing import Any, Callable

from llmd.config import Config
from llmd.core.engine.base import LoadSettings
from llmd.core.events import EventBroker
from llmd.core.registry import Model


class ExternalDeployment:
    """A deployment whose engine is another process; same outward interface as ``Deployment``."""

    external = True

    def __init__(self, model: Model, settings: LoadSettings, config: Config, *,
                 on_state: Callable[[Any], None] | None = None,
                 on_finish: Callable[..., None] | None = None,
                 events: EventBroker | None = None) -> None:
        raise NotImplementedError("external deployments are not available yet")
