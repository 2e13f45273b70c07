"""A role's heartbeat to the configuration server: its health, every
``interval`` seconds, with the token the role got when it registered
(``POST /v1/roles/heartbeat``). A missed beat is logged and retried at the
next tick; the role itself keeps working (replication does not depend on
the configuration server being up)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vmdr.model.errors import VmdrError
from vmdr.transport.client import ServiceClient

__all__ = ["start_heartbeat"]

log = logging.getLogger(__name__)


def start_heartbeat(
    url: str,
    ca_file: Path,
    token: str,
    health: Callable[[], dict[str, Any]],
    interval: float = 30.0,
) -> threading.Event:
    """Beat now and then every ``interval`` s until the returned event is set."""
    stop = threading.Event()

    def beat() -> None:
        with ServiceClient("configuration server", url, ca_file, token, timeout=10) as client:
            while True:
                try:
                    client.post("/v1/roles/heartbeat", {"health": health()})
                except VmdrError as exc:
                    log.warning("heartbeat to %s failed: %s", url, exc.message)
                if stop.wait(interval):
                    return

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop
