"""Engines: where rows live and how partial statistics are reduced."""

from emkit.engines._base import Engine
from emkit.engines.memory import InMemoryEngine
from emkit.engines.reduced import ReducedEngine

__all__ = ["Engine", "InMemoryEngine", "ReducedEngine"]
