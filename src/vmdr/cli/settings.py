"""What each ``vmdr serve`` service is started with, as typed settings
(pydantic-settings), loaded once: a flag wins over the environment
(``VMDR_<SERVICE>_<NAME>``, e.g. ``VMDR_MASTER_TARGET_PORT``), which wins
over the TOML file of ``--config`` (keys are the long flag names with ``_``
for ``-``), which wins over the defaults. A key the service does not know is
refused, in the file as in the environment's JSON, rather than ignored (a
typo there would otherwise leave a default in force without a word).

Secrets are read from files (``--master-target-token-file``), never from
flags, which ``ps`` would show."""

from __future__ import annotations

import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vmdr.model.errors import UsageError

__all__ = [
    "ConfigServerOptions",
    "MasterTargetOptions",
    "ProcessServerOptions",
    "WorkerOptions",
    "parse_size",
]

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_CONFIG: ContextVar[Path | None] = ContextVar("vmdr_serve_config", default=None)


def parse_size(text: str | int | None) -> int | None:
    """``"20M"`` -> 20 MiB; plain numbers are bytes."""
    if text is None or isinstance(text, int):
        return text
    match = _SIZE.match(text.strip())
    if not match:
        raise UsageError(detail=f"{text!r} is not a size (e.g. 512M, 20G, 1048576)")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def _size(value: Any) -> Any:
    try:
        return parse_size(value) if isinstance(value, str | int) or value is None else value
    except UsageError as exc:
        raise ValueError(exc.message) from None


Size = Annotated[int | None, BeforeValidator(_size)]


class _Options(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", env_ignore_empty=True)

    state_dir: Path
    log_level: str = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = _CONFIG.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @classmethod
    def load(cls, config: Path | None, flags: dict[str, Any]) -> Self:
        """The settings from ``flags`` (unset ones: None or an empty list),
        the environment and the ``config`` file; refused whole with what is
        wrong in each."""
        given = {k: v for k, v in flags.items() if v not in (None, [])}
        if config is not None:
            try:
                tomllib.loads(config.read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise UsageError(detail=f"cannot read config {config}: {exc}") from exc
        token = _CONFIG.set(config)
        try:
            return cls(**given)
        except ValidationError as exc:
            prefix = str(cls.model_config.get("env_prefix", ""))
            raise UsageError(detail="; ".join(_explain(e, prefix) for e in exc.errors())) from None
        finally:
            _CONFIG.reset(token)


def _explain(error: Any, prefix: str) -> str:
    key = ".".join(str(p) for p in error.get("loc", ())) or "-"
    flag = "--" + key.split(".")[0].replace("_", "-")
    if error.get("type") == "missing":
        where = f"flag {flag}, {prefix}{key.split('.')[0].upper()} or the config file"
        return f"{flag} is required ({where})"
    if error.get("type") == "extra_forbidden":
        return f"{key!r} is not a setting of this service"
    return f"{flag}: {error.get('msg')}"


class _Service(_Options):
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    ca_dir: Path | None = None  # default <state-dir>/pki
    cert: Path | None = None  # the operator's own certificate, with ``key``
    key: Path | None = None
    configuration_server: str | None = None  # https://HOST:PORT to send heartbeats to
    configuration_server_ca: Path | None = None
    configuration_server_token_file: Path | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("--cert and --key go together")
        return self


class _Role(_Service):
    # The configuration server's public grant key (its registration answer's
    # ``grant_key``): only disks it assigned are read or written.
    grant_key: Path


class MasterTargetOptions(_Role):
    model_config = SettingsConfigDict(env_prefix="VMDR_MASTER_TARGET_")

    # NAME=PATH folders it may write files in; none on a real site, where it
    # writes only the disks attached to its VM (``by_id``).
    datastore: list[str] = []
    by_id: Path = Path("/dev/disk/by-id")  # where the disks attached to its VM appear
    device_wait: float = Field(default=60.0, ge=0, le=3600)
    retention_dir: Path
    retention_hours: float = Field(default=24.0, gt=0)
    retention_quota: Size = None
    retention_min_free: Size = 256 << 20
    stream_idle: float = Field(default=60.0, gt=0, le=3600)


class ProcessServerOptions(_Role):
    model_config = SettingsConfigDict(env_prefix="VMDR_PROCESS_SERVER_")

    cache_dir: Path | None = None  # default <state-dir>/cache
    master_target: str
    master_target_ca: Path
    master_target_token_file: Path
    bandwidth: Size = 0  # bytes per second, 0 = no limit
    cache_limit: Size = None
    compress: bool = True


class ConfigServerOptions(_Service):
    model_config = SettingsConfigDict(env_prefix="VMDR_CONFIGURATION_SERVER_")

    database: str | None = None  # SQLAlchemy URL; default SQLite in the state folder
    worker: bool = True


class WorkerOptions(_Options):
    model_config = SettingsConfigDict(env_prefix="VMDR_WORKER_")

    database: str
