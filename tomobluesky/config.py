"""One typed configuration, read from ``TOMOBLUESKY_*`` environment variables
(nested with ``__``, e.g. ``TOMOBLUESKY_RECON__ALGORITHM=fbp``)."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .limits import check_memory_budget_gb
from .schema import ReconSettings


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("tomobluesky")) / "catalog"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOMOBLUESKY_", env_nested_delimiter="__")

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
