"""The ingest output contract (SPEC S3): Parquet schemas of ``manifest/`` and ``clips/`` and the reason vocabulary.

Layout on disk (one pair of files per input batch, named by a hash of the batch's paths, so a retried batch
overwrites its own files instead of adding new ones)::

    OUTPUT/manifest/part-<hash>.parquet   one row per input file (every file, DICOM or not)
    OUTPUT/clips/part-<hash>.parquet      one row per accepted file

``clips.echo`` uses Ray Data's variable-shaped tensor extension type
(``ray.data.arrow_variable_shaped_tensor``): ``ray.data.read_parquet`` (and :func:`eee_ray.ingest.read_clips`) yield
it as a numpy ``uint8`` array ``(F, 224, 224)`` per row. A plain pyarrow reader without Ray sees the storage type,
``struct<data: large_list<uint8>, shape: list<int64>>``; :func:`echo_from_storage` turns one such value back into
the array. ``ecg_px`` holds one value per traced column (pixels, positive up, relative to the strip's vertical
centre); ``ecg`` is ``ecg_px`` resampled to 100 Hz over the clip's duration (``n_frames * frame_time_ms``), still in
strip pixels (downstream stages normalise).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

US_MULTIFRAME_SOP = "1.2.840.10008.5.1.4.1.1.3.1"

OK = "ok"
REJECTED = "rejected"

NOT_DICOM = "not_dicom"
UNREADABLE = "unreadable"
NOT_US_MULTIFRAME = "not_us_multiframe"
TOO_MANY_FRAMES = "too_many_frames"
DECODE_ERROR = "decode_error"
NO_ECG_TRACE = "no_ecg_trace"
ECG_AMPLITUDE_CLIPPED = "ecg_amplitude_clipped"
ECG_DISCONTINUOUS = "ecg_discontinuous"
ECG_HSV_OUTLIERS = "ecg_hsv_outliers"
ECG_LOW_COVERAGE = "ecg_low_coverage"

REASONS: tuple[str, ...] = (NOT_DICOM, UNREADABLE, NOT_US_MULTIFRAME, TOO_MANY_FRAMES, DECODE_ERROR, NO_ECG_TRACE,
                            ECG_AMPLITUDE_CLIPPED, ECG_DISCONTINUOUS, ECG_HSV_OUTLIERS, ECG_LOW_COVERAGE)

MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()),          # relative to --input, '/'-separated
    ("subject_id", pa.int64()),     # null when unknown
    ("study_id", pa.int64()),       # null when unknown
    ("sop_class_uid", pa.string()),
    ("n_frames", pa.int32()),
    ("status", pa.string()),        # ok | rejected
    ("reason", pa.string()),        # null when ok, else one of REASONS
    ("detail", pa.string()),        # human-readable, never holds tag values (no PHI)
])

# Quality figures of the four ECG checks, stored with every accepted clip.
QUALITY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("trace_mode", pa.string()),          # paper | auto (which colour window found the trace)
    ("coverage", pa.float32()),           # traced columns / strip width
    ("edge_columns", pa.int32()),         # columns whose trace touches the strip's top or bottom edge
    ("max_gap_px", pa.int32()),           # longest run of untraced columns inside [trace_x0, trace_x1]
    ("max_jump_px", pa.int32()),          # largest vertical break per column between consecutive traced columns
    ("outlier_fraction", pa.float32()),   # lit pixels off the trace path / all lit pixels
)


def echo_type() -> pa.DataType:
    """Ray's variable-shaped tensor type (uint8), the type of ``clips.echo``."""
    from ray.data._internal.tensor_extensions.arrow import ArrowVariableShapedTensorType

    return ArrowVariableShapedTensorType(pa.uint8(), 3)


def echo_array(clips: list[np.ndarray]) -> pa.Array:
    """A list of ``(F, S, S)`` uint8 arrays -> one Arrow column of Ray's variable-shaped tensor type."""
    from ray.data._internal.tensor_extensions.arrow import ArrowVariableShapedTensorArray

    return ArrowVariableShapedTensorArray.from_numpy([np.ascontiguousarray(c, dtype=np.uint8) for c in clips])


def echo_from_storage(value: dict) -> np.ndarray:
    """One ``echo`` value read by plain pyarrow (``{'data': [...], 'shape': [...]}``) -> ``(F, S, S)`` uint8."""
    return np.asarray(value["data"], dtype=np.uint8).reshape(tuple(value["shape"]))


def clips_schema() -> pa.Schema:
    return pa.schema([
        ("path", pa.string()),
        ("subject_id", pa.int64()),
        ("study_id", pa.int64()),
        ("n_frames", pa.int32()),
        ("frame_time_ms", pa.float32()),
        ("echo", echo_type()),
        ("ecg_px", pa.list_(pa.float32())),
        ("ecg", pa.list_(pa.float32())),
        ("trace_x0", pa.int32()),
        ("trace_x1", pa.int32()),
        *QUALITY_FIELDS,
    ])
