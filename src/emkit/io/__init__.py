"""Reading tables and writing and reading model files (never pickle)."""

from emkit.io.model_file import load_model, save_model
from emkit.io.open_table import ChunkedTable, open_table
from emkit.io.tables import load_faithful, read_table

__all__ = [
    "ChunkedTable",
    "load_faithful",
    "load_model",
    "open_table",
    "read_table",
    "save_model",
]
