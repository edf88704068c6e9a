"""How a run's work is cut into checkpointed chunks and where the chunks run: ``EngineConfig``, the one
block ``ap2o-build run`` (``BuildConfig.engine``) and ``ap2o-eval`` (``EvalConfig.engine``) share, and
what the drivers take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from builder.errors import UserError

ENGINES = ("local", "ray")  # the drivers (builder.engine.drivers maps each name to its module)


@dataclass
class EngineConfig:
    """Chunks and their driver: how many problems a checkpointed chunk holds and where chunks are
    sampled and graded (the rows are the same either way)."""

    chunk_problems: int = field(default=16, metadata={
        "help": "problems per checkpointed chunk of sampling and grading (a crash loses at most one chunk of work)"})
    driver: str = field(default="local", metadata={
        "flag": "engine", "choices": ENGINES,
        "help": "where chunks are sampled and graded: local (this process) or ray (Ray Data actors; the .[ray] "
                "extra, docs/ray.md); the results are the same"})
    ray_address: str | None = field(default=None, metadata={
        "help": "engine ray: the cluster to join (ray.init's address: 'auto', HOST:6379, ray://HOST:10001); "
                "default: a local Ray instance for this run"})

    # the names a recipe's top level and EvalConfig.from_flat use (a flag's name without dashes) -> field
    FLAT: ClassVar[dict[str, str]] = {"chunk_problems": "chunk_problems", "engine": "driver", "ray_address": "ray_address"}

    def __post_init__(self) -> None:
        if isinstance(self.chunk_problems, bool) or not isinstance(self.chunk_problems, int) or self.chunk_problems < 1:
            raise UserError(f"chunk_problems must be >= 1, got {self.chunk_problems!r}")
        if self.driver not in ENGINES:
            raise UserError(f"unknown engine {self.driver!r} (choose from: {', '.join(ENGINES)})")

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> EngineConfig:
        """The config that flat settings (``{"engine": "ray", "chunk_problems": 4}``) describe."""
        return cls(**{cls.FLAT[k]: v for k, v in values.items()})

    def to_flat(self) -> dict[str, Any]:
        return {k: getattr(self, name) for k, name in self.FLAT.items()}


# How EngineConfig's fields are spelt on every command that runs the engine (run, ap2o-eval): the
# flag of chunk_problems was --chunk-size on ap2o-eval before the two commands shared this block.
COMMAND_LINE = {"aliases": {"chunk_problems": ("--chunk-size",)}}

__all__ = ["COMMAND_LINE", "ENGINES", "EngineConfig"]
