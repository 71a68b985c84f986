"""Engines: where rows live and how partial statistics are reduced."""

from emkit.engines._base import Engine, resolve_engine
from emkit.engines._source import RowChunk, RowIndex, RowSource
from emkit.engines.dask import DaskEngine
from emkit.engines.memory import InMemoryEngine
from emkit.engines.reduced import ReducedEngine
from emkit.engines.streaming import StreamingEngine

__all__ = [
    "ENGINE_NAMES",
    "DaskEngine",
    "Engine",
    "InMemoryEngine",
    "ReducedEngine",
    "RowChunk",
    "RowIndex",
    "RowSource",
    "StreamingEngine",
    "resolve_engine",
]

ENGINE_NAMES = ("memory", "streaming", "dask")
