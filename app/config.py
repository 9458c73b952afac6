"""config.yaml -> typed settings, with environment overrides (AI_ARTIST_SECTION__KEY=value).

pydantic-settings does the reading: the environment (prefix `AI_ARTIST_`, `__` between section and
key) takes precedence over the YAML file, which takes precedence over the defaults here. An invalid
value stops the launch with a message that names the key and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"
ENV_PREFIX = "AI_ARTIST_"


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and what is allowed."""


class _ReadsLikeADict:
    """Settings that also read like the dict the websocket guide indexes (config["model"]["device"])."""

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class _Section(_ReadsLikeADict, BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Section):
    base_model: str = "assets/models/ai-artist-tiny"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    cpu_threads: int | None = Field(None, ge=1, le=256)
    single_file_config: Path | None = None
    attention_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False
    compile: bool = False
    lora_dir: Path | None = Field(None, description="Folder of LoRA .safetensors files; null: <data_dir>/loras.")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    title: str = "AI Artist"
    cors_origins: str = Field(
        r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?",
        description="Regex of browser origins allowed to call the API (external web clients).",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Keys a client must present (Bearer, HTTP Basic password, /ws?token=, the studio's sign-in). "
        "The environment takes them comma-separated.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names a studio without keys answers besides loopback ones (DNS-rebinding guard), "
        "e.g. a local reverse proxy's name. The environment takes them comma-separated.",
    )
    no_auth: bool = Field(False, description="Serve a non-loopback host without any key (no generated key).")
    max_body_bytes: int = Field(50_000_000, ge=1_000, le=2_000_000_000)
    ws_max_message_bytes: int = Field(65_536, ge=256, le=16_000_000)
    max_subscriptions_per_connection: int = Field(256, ge=1, le=100_000)
    max_connections_per_client: int = Field(64, ge=1, le=1_000_000)

    @field_validator("api_keys", "allowed_hosts", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """`a,b` (the environment's form) or a list; blanks dropped."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            return [str(key).strip() for key in value if str(key).strip()]
        return value


class StorageSettings(_Section):
    data_dir: Path = Path("data")


class UploadSettings(_Section):
    """Limits on input images (`POST /api/uploads`, and init/mask images sent with a job)."""

    max_bytes: int = Field(20_000_000, ge=1_000, le=1_000_000_000)
    max_side: int = Field(4096, ge=64, le=16384)


def log_file_in(data_dir: Path) -> Path:
    """Where the server and its generation processes write their logs."""
    return data_dir / "logs" / "ai-artist.log"


class QueueSettings(_Section):
    max_pending: int = Field(100, ge=1, le=100_000)
    max_attempts: int = Field(2, ge=1, le=10)
    max_pending_per_client: int = Field(50, ge=1, le=100_000)
    backend: Literal["local", "redis"] = Field("local", description="local: in this server; redis: a Redis Stream.")
    redis_url: str | None = Field(None, description="redis://host:6379/0; required for backend redis.")
    heartbeat_timeout: float = Field(
        10, ge=1, le=600, description="Seconds without a heartbeat before a remote worker's job is taken over."
    )
    max_batch: int = Field(
        4, ge=1, le=64, description="Compatible waiting jobs run as one pipeline call, up to this many; 1: one at a time."
    )


class WorkerSettings(_Section):
    """Generation processes inside this server (remote workers join over Redis: docs/scaling.md)."""

    local: int = Field(1, ge=0, le=64, description="Local generation processes; 0: remote workers only.")
    devices: list[str] = Field(
        default_factory=list, description="One local worker per entry (e.g. cuda:0, cuda:1); overrides `local`."
    )

    def local_devices(self, default: str) -> list[str]:
        """The device of each local worker."""
        return list(self.devices) if self.devices else [default] * self.local


class PreviewSettings(_Section):
    enabled: bool = True
    every_n_steps: int = Field(1, ge=1)
    min_interval_ms: float = Field(200, ge=0)
    max_side: int = Field(256, ge=16, le=2048)
    taesd_dir: Path | None = None


class Settings(_ReadsLikeADict, BaseSettings):
    """Every setting. `Settings()` reads the environment only; `load_config()` adds config.yaml."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_parse_none_str="null",
        extra="forbid",
        validate_assignment=True,
    )

    model: ModelSettings = ModelSettings()
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    queue: QueueSettings = QueueSettings()
    previews: PreviewSettings = PreviewSettings()
    uploads: UploadSettings = UploadSettings()
    workers: WorkerSettings = WorkerSettings()

    def lora_folder(self) -> Path:
        """Where LoRA files are looked up: model.lora_dir, or <data_dir>/loras."""
        folder = self.model.lora_dir if self.model.lora_dir is not None else Path(self.storage.data_dir) / "loras"
        return folder.expanduser().resolve()

    def resolved_model(self, base_dir: Path = PROJECT_ROOT) -> str:
        """The model reference with a relative local path made absolute (hub ids pass through)."""
        candidate = Path(self.model.base_model).expanduser()
        if not candidate.is_absolute() and (base_dir / candidate).exists():
            return str((base_dir / candidate).resolve())
        return str(candidate.resolve()) if candidate.exists() else self.model.base_model


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    allowed = error.get("ctx", {}).get("expected")
    message = f"{key}: {error['msg']}"
    if error["type"] == "extra_forbidden":
        message = f"{key}: unknown setting"
    elif allowed:
        message = f"{key}: must be one of {allowed}"
    if error["type"] != "missing" and "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return message


def _settings_reading(config_file: Path) -> type[Settings]:
    """Settings whose values come from the environment, then `config_file`, then the defaults."""

    class SettingsFromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file)

    return SettingsFromFile


def _check_yaml(config_path: Path) -> None:
    """Say plainly what is wrong with a file that is not a YAML mapping of sections."""
    try:
        raw = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping of sections, got {type(raw).__name__}")


def load_config(path: str | Path | None = None) -> Settings:
    """Read config.yaml (or `path`), apply AI_ARTIST_* environment overrides, validate."""
    config_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if config_path.exists():
        _check_yaml(config_path)
        settings_class = _settings_reading(config_path)
    elif path is not None:
        raise ConfigError(f"config file not found: {config_path}")
    else:
        settings_class = Settings
    try:
        settings = settings_class()
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ConfigError(f"invalid configuration in {config_path}: {problems}") from None
    check_workers(settings, config_path)
    base_dir = config_path.resolve().parent
    settings.model.base_model = settings.resolved_model(base_dir)
    settings.model.single_file_config = _local_path(settings.model.single_file_config, base_dir)
    settings.previews.taesd_dir = _local_path(settings.previews.taesd_dir, base_dir)
    settings.model.lora_dir = _local_path(settings.model.lora_dir, base_dir)
    return settings


def check_workers(settings: Settings, where: object = "the settings") -> None:
    """Raise ConfigError when no worker could run a job, or the Redis backend has no URL."""
    if settings.queue.backend == "redis" and not settings.queue.redis_url:
        raise ConfigError(f"invalid configuration in {where}: queue.backend redis needs queue.redis_url")
    if settings.queue.backend == "local" and not settings.workers.local_devices(settings.model.device):
        raise ConfigError(
            f"invalid configuration in {where}: workers.local is 0 with queue.backend local: nothing would run jobs"
        )


def _local_path(value: Path | None, base_dir: Path) -> Path | None:
    """A relative path made absolute against the config file's folder, when it exists there."""
    if value is None:
        return None
    value = value.expanduser()
    if not value.is_absolute() and (base_dir / value).exists():
        return (base_dir / value).resolve()
    return value
