"""CSV -> checked rows (text columns as codes) -> split parts -> statistics, scores and batches.

One data path, in memory and streamed:

- ``builder.data.csv``: the one reader (file, header and cell rules, their messages).
- ``builder.data.columns``: column types, vocabularies, class labels, the dummy design.
- ``builder.data.classes``: classification metrics and the logistic baseline.
- ``builder.data.split``: the seeded permutation (in memory) and the hash split (streamed).
- ``builder.data.stats``: the float64 accumulators and the one statistics pass.
- ``builder.data.scoring``: metrics and baselines, on arrays and accumulated.
- ``builder.data.table``: ``Table``, what training gets; ``load_splits``, ``problems``.
- ``builder.data.tfdata``: the ``tf.data`` edge (the only module that imports TensorFlow).

Knows columns and rows, nothing about models.
"""

from builder.data.csv import (
    CHUNK_ROWS,
    FLOAT32_MAX,
    MAX_MAGNITUDE,
    MAX_TARGET_STD,
    NA_VALUES,
    Block,
    CsvReader,
    absent_message,
    check_fill,
    check_target_spread,
    checked_header,
    csv_options,
    empty_cells_message,
    file_sha256,
    present_columns,
    read_column_chunks,
    read_columns,
)
from builder.data.split import (
    PARTS,
    TEST,
    TRAIN,
    VALIDATION,
    row_uniform,
    split_codes,
    split_message,
    split_rows,
)
from builder.data.stats import Stats
from builder.data.table import (
    AUTO_STREAMING_BYTES,
    SHUFFLE_ROWS,
    Part,
    Table,
    examine,
    load_splits,
    problems,
    use_streaming,
)

__all__ = [
    "AUTO_STREAMING_BYTES",
    "CHUNK_ROWS",
    "FLOAT32_MAX",
    "MAX_MAGNITUDE",
    "MAX_TARGET_STD",
    "NA_VALUES",
    "PARTS",
    "SHUFFLE_ROWS",
    "TEST",
    "TRAIN",
    "VALIDATION",
    "Block",
    "CsvReader",
    "Part",
    "Stats",
    "Table",
    "absent_message",
    "check_fill",
    "check_target_spread",
    "checked_header",
    "csv_options",
    "empty_cells_message",
    "examine",
    "file_sha256",
    "load_splits",
    "present_columns",
    "problems",
    "read_column_chunks",
    "read_columns",
    "row_uniform",
    "split_codes",
    "split_message",
    "split_rows",
    "use_streaming",
]
