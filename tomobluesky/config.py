"""One typed configuration: command-line options over ``TOMOBLUESKY_*`` environment
variables (nested with ``__``, e.g. ``TOMOBLUESKY_RECON__ALGORITHM=fbp``) over a YAML
file named by ``TOMOBLUESKY_CONFIG`` (the same keys, nested as sections) over defaults."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from .limits import check_memory_budget_gb
from .schema import ReconSettings


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tomobluesky")) / "catalog"


CONFIG_ENV = "TOMOBLUESKY_CONFIG"


class Settings(BaseSettings):
    # extra="forbid": a misspelt key in the YAML file is an error naming it, not a setting silently unused
    model_config = SettingsConfigDict(env_prefix="TOMOBLUESKY_", env_nested_delimiter="__", extra="forbid")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments (the command line's), then the environment, then the YAML file of $TOMOBLUESKY_CONFIG."""
        sources = [init_settings, env_settings]
        path = os.environ.get(CONFIG_ENV)
        if path:
            if not Path(path).is_file():
                raise FileNotFoundError(f"${CONFIG_ENV} names {path}, which is not a file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    data_dir: Path = Field(default_factory=default_data_dir, description="catalogue data directory")
    tiled_uri: str | None = Field(None, description="an existing Tiled server to write to")
    tiled_api_key: str | None = None
    beamline: str = "tomo"
    kafka_bootstrap: str | None = None
    recon: ReconSettings = Field(default_factory=ReconSettings)
    volume_dir: Path | None = Field(None, description="where reconstructed volumes (Zarr stores) are written; "
                                    "the Tiled server must be able to read it (default: <data_dir>/volumes)")
    memory_budget_gb: float = Field(2.0, description="peak resident memory of the stop path, GB: > 0 and at most "
                                    "this machine's memory")
    data_roots: list[Path] | None = Field(None, description="directories detector files may be read from; "
                                          "documents naming files elsewhere are refused "
                                          "(default: <data_dir>/detector). Env: a JSON list")
    pipeline_file: Path | None = Field(None, description="a YAML file with the processing steps of every scan "
                                       "that names none (docs/steps.md); read into recon.pipeline")
    dask_scheduler: str | None = Field(None, description="run the stop path's slabs on Dask: 'local' (a cluster of "
                                       "this machine's cores) or a scheduler address (tcp://host:8786) whose "
                                       "workers share the filesystem; unset: in this process")

    @model_validator(mode="after")
    def _read_pipeline_file(self):
        if self.pipeline_file is not None and self.recon.pipeline is None:
            from .steps import Pipeline

            spec = Pipeline.spec_from_yaml(self.pipeline_file)
            self.recon = ReconSettings(**{**self.recon.model_dump(exclude_unset=True), "pipeline": spec})
        return self

    @field_validator("memory_budget_gb")
    @classmethod
    def _budget_fits_the_machine(cls, value: float) -> float:
        return check_memory_budget_gb(value)

    @property
    def roots(self) -> list[Path]:
        return list(self.data_roots) if self.data_roots else [self.data_dir / "detector"]

    @property
    def volumes(self) -> Path:
        return self.volume_dir or self.data_dir / "volumes"
