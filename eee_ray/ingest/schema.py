"""The ingest output contract (docs/contract.md, Ingest): Parquet schemas of ``manifest/`` and ``clips/`` and the reason
vocabulary.

Layout on disk (one pair of files per input batch, named by a hash of the batch's paths, so a retried batch
overwrites its own files instead of adding new ones)::

    OUTPUT/manifest/part-<hash>.parquet   one row per input file (every file, DICOM or not)
    OUTPUT/clips/part-<hash>.parquet      one row per accepted file

``clips.echo`` uses Ray Data's variable-shaped tensor extension type
(``ray.data.arrow_variable_shaped_tensor``) by default: ``ray.data.read_parquet`` (and
:func:`eee_ray.ingest.read_clips`) yield it as a numpy ``uint8`` array ``(F, 224, 224)`` per row. A plain pyarrow
reader without Ray sees the storage type, ``struct<data: large_list<uint8>, shape: list<int64>>``;
:func:`echo_from_storage` turns one such value back into the array.

``--echo-storage bytes`` (``IngestConfig.echo_storage``) stores ``echo`` as ``large_binary`` instead: the same
pixels, C order, shape ``(n_frames, echo_size, echo_size)``. Parquet has no 8-bit type and writes every element of
a list as an INT32 with its own repetition and definition levels, 14-30 ms of CPU for a 38-frame cine, a third to
two thirds of what decoding it costs; one binary value per clip is written in 2-4 ms. :func:`eee_ray.ingest.read_clips`
and :func:`echo_from_storage` return the same ``(F, S, S)`` arrays for both storages, so the later stages do not
care; only a reader that bypasses them sees bytes.

``ecg_px`` holds one value per traced column (pixels, positive up, relative to the strip's vertical
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

# Quality figures of the ECG checks, stored with every accepted clip.
QUALITY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("trace_mode", pa.string()),          # paper | auto (which colour window found the trace)
    ("coverage", pa.float32()),           # traced columns / the trace's own extent (trace_x1 - trace_x0 + 1)
    ("edge_columns", pa.int32()),         # columns whose trace touches the strip's top or bottom edge
    ("max_gap_px", pa.int32()),           # longest run of untraced columns inside [trace_x0, trace_x1]
    ("max_jump_px", pa.int32()),          # largest vertical break per column between consecutive traced columns
    ("outlier_fraction", pa.float32()),   # lit pixels off the trace path / all lit pixels
)


def echo_type() -> pa.DataType:
    """Ray's variable-shaped tensor type (uint8), the type of ``clips.echo``."""
    from ray.data.extensions import ArrowVariableShapedTensorType

    return ArrowVariableShapedTensorType(pa.uint8(), 3)


def echo_array(clips: list[np.ndarray]) -> pa.Array:
    """A list of ``(F, S, S)`` uint8 arrays -> one Arrow column of Ray's variable-shaped tensor type."""
    from ray.data.extensions import ArrowVariableShapedTensorArray

    return ArrowVariableShapedTensorArray.from_numpy([np.ascontiguousarray(c, dtype=np.uint8) for c in clips])


def echo_from_storage(value, n_frames: int | None = None) -> np.ndarray:
    """One ``echo`` value read by plain pyarrow -> ``(F, S, S)`` uint8: ``{'data': [...], 'shape': [...]}`` of the
    tensor storage, or the ``bytes`` of the bytes storage (then ``n_frames`` gives F)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return echo_from_bytes(value, n_frames)
    return np.asarray(value["data"], dtype=np.uint8).reshape(tuple(value["shape"]))


def echo_from_bytes(value, n_frames: int | None) -> np.ndarray:
    flat = np.frombuffer(value, dtype=np.uint8)
    if not n_frames or flat.size % n_frames:
        raise ValueError(f"bytes echo of {flat.size} bytes does not split into n_frames={n_frames} frames")
    side = int(round((flat.size // n_frames) ** 0.5))
    if side * side * n_frames != flat.size:
        raise ValueError(f"bytes echo of {flat.size} bytes is not {n_frames} square frames")
    return flat.reshape(n_frames, side, side)


def echo_column_type(storage: str = "tensor") -> pa.DataType:
    return pa.large_binary() if storage == "bytes" else echo_type()


def echo_column(clips: list[np.ndarray], storage: str = "tensor") -> pa.Array:
    if storage == "bytes":
        return pa.array([np.ascontiguousarray(c, dtype=np.uint8).tobytes() for c in clips], pa.large_binary())
    return echo_array(clips)


def echo_batch_to_tensors(batch: dict) -> dict:
    """A numpy batch of a bytes-stored ``clips/`` -> the same batch with ``echo`` as ``(F, S, S)`` arrays."""
    arrays = [echo_from_bytes(v, int(n)) for v, n in zip(batch["echo"], batch["n_frames"])]
    out = dict(batch)
    out["echo"] = _ragged(arrays)
    return out


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of arrays, which Ray turns into its variable-shaped tensor column (``np.array`` would try
    to stack them)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def clips_schema(echo_storage: str = "tensor") -> pa.Schema:
    return pa.schema([
        ("path", pa.string()),
        ("subject_id", pa.int64()),
        ("study_id", pa.int64()),
        ("n_frames", pa.int32()),
        ("frame_time_ms", pa.float32()),
        ("echo", echo_column_type(echo_storage)),
        ("ecg_px", pa.list_(pa.float32())),
        ("ecg", pa.list_(pa.float32())),
        ("trace_x0", pa.int32()),
        ("trace_x1", pa.int32()),
        *QUALITY_FIELDS,
    ])
