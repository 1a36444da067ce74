"""What a start document of a tomography scan carries, named after Data Exchange
where it has a name (``theta``, ``sample_name``, ``pixel_size``, ``energy``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


def _checked_pipeline(value: list[dict] | None) -> list[dict] | None:
    """A pipeline whose steps are installed, with valid parameters, in an order that works; the
    registry is imported here so that reading settings stays cheap when no pipeline is given."""
    if value is not None:
        from .steps import Pipeline

        Pipeline.from_spec(value)
    return value


class ReconSettings(BaseModel):
    """Per-scan reconstruction settings; a start document may override the worker's."""

    model_config = ConfigDict(extra="forbid")

    algorithm: str = "nufft"
    backend: str = "numpy"
    filter_name: str = "cosine"  # SSIM and RMSE on the tooth better than Shepp-Logan at the same cost (docs/benchmarks.md)
    center: float | None = Field(None, allow_inf_nan=False, description="detector column of the axis; None finds it")
    center_method: str = "auto"
    ring_removal: bool = False
    phase_retrieval: dict | None = Field(None, description="Paganin parameters: distance, delta_beta")
    preview_every: int = Field(10, ge=1, description="refresh the live slice every N projections")
    preview_interval_s: float = Field(
        0.5, ge=0, allow_inf_nan=False,
        description="and at most once per this many seconds: each refresh costs the catalogue a few requests, "
                    "CPU that a fast scan on a small host would otherwise get; 0 refreshes every N projections")
    pipeline: list[dict] | None = Field(None, description="the processing steps of every scan that names none "
                                        "(docs/steps.md); None: the default chain")

    @field_validator("pipeline")
    @classmethod
    def _known_steps(cls, value):
        return _checked_pipeline(value)

    @field_validator("algorithm", "backend", "filter_name")
    @classmethod
    def _engine_has_it(cls, value: str, info: ValidationInfo) -> str:
        """Names the engine knows, checked when the settings are made, not when a scan ends and they are used.
        The engine is imported here, not at the top, so reading settings stays cheap when none is given."""
        from . import recon

        known = {"algorithm": recon.ALGORITHMS, "backend": recon.BACKENDS, "filter_name": recon.FILTERS}
        if value not in known[info.field_name]:
            raise ValueError(f"unknown {info.field_name} {value!r}; choose one of "
                             f"{', '.join(known[info.field_name])}")
        return value


class TomoScanMetadata(BaseModel):
    """The part of the start document a reconstruction needs."""

    model_config = ConfigDict(extra="allow")

    scan_type: Literal["step", "fly"]
    theta: list[float] = Field(description="planned rotation angles")
    theta_units: Literal["deg"] = "deg"
    num_projections: int
    num_darks: int
    num_flats: int
    detector_shape: tuple[int, int] = Field(description="(rows, columns)")
    pixel_size: float | None = Field(None, description="detector pixel size at the sample")
    pixel_size_units: str = "um"
    energy: float | None = None
    energy_units: str = "keV"
    sample_name: str = ""
    center_hint: float | None = Field(None, allow_inf_nan=False,
                                      description="detector column of the rotation axis, if known")
    camera: str
    rotation: str
    recon: ReconSettings | None = None
    pipeline: list[dict] | None = Field(None, description="the processing steps of this scan, "
                                        "[{'step': name, 'params': {...}}, ...] (docs/steps.md); None: the default")

    @field_validator("pipeline")
    @classmethod
    def _known_steps(cls, value):
        """Refused at the start document (and by the plan before it): unknown steps, bad parameters, order."""
        return _checked_pipeline(value)
