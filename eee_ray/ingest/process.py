"""One input file -> one manifest row (+ one clips row when accepted). Never raises: every failure is a reason.

Header first (no pixel data read): DICOM?, SOP class, frame count, size limit, frame timing. Only files that pass
are read in full and decoded. Details never quote tag values, so no PHI leaves through them.
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass

import numpy as np

from eee_ray.ingest import schema as S
from eee_ray.ingest.config import IngestConfig
from eee_ray.ingest.decode import Decoded, DecodeError, decode, echo_rows
from eee_ray.ingest.discover import InputFile
from eee_ray.ingest.trace import TraceResult, resample, trace_ecg


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class Outcome:
    manifest: dict
    clip: dict | None = None
    decoded: Decoded | None = None     # kept only when asked (QA pictures)
    trace: TraceResult | None = None


def _numeric_id(ds, tag: str) -> int | None:
    v = str(ds.get(tag, "") or "").strip()
    return int(v) if v.isdigit() else None


def frame_time_ms(ds) -> float | None:
    """FrameTime, else the mean FrameTimeVector interval, else CineRate / RecommendedDisplayFrameRate."""
    ft = ds.get("FrameTime")
    if ft not in (None, "") and float(ft) > 0:
        return float(ft)
    ftv = ds.get("FrameTimeVector")
    if ftv not in (None, ""):
        v = [float(x) for x in ftv] if hasattr(ftv, "__len__") and not isinstance(ftv, str) else [float(ftv)]
        v = v[1:] if len(v) > 1 else v  # the first entry is 0 (time of frame 1)
        if np.mean(v) > 0:
            return float(np.mean(v))
    for tag in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = ds.get(tag)
        if rate not in (None, "") and float(rate) > 0:
            return 1000.0 / float(rate)
    return None


def read_header(fh):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(fh, stop_before_pixels=True)
    except InvalidDicomError:
        raise Rejected(S.NOT_DICOM, "no DICOM preamble/prefix: not a DICOM file") from None
    except Exception as e:
        raise Rejected(S.UNREADABLE, f"DICOM header cannot be parsed: {type(e).__name__}") from None


def check_header(ds, cfg: IngestConfig, row: dict) -> tuple[int | None, float | None]:
    sop = str(ds.get("SOPClassUID", "") or "")
    row["sop_class_uid"] = sop or None
    if sop != S.US_MULTIFRAME_SOP:
        raise Rejected(S.NOT_US_MULTIFRAME, f"SOPClassUID {sop or 'missing'} is not Ultrasound Multi-frame Image "
                                            "Storage")
    nf_raw = ds.get("NumberOfFrames")
    nf = int(nf_raw) if nf_raw not in (None, "") else None
    if nf is not None:
        row["n_frames"] = nf
        if nf > cfg.max_frames:
            raise Rejected(S.TOO_MANY_FRAMES, f"{nf} frames (> {cfg.max_frames})")
        if nf < 1:
            raise Rejected(S.DECODE_ERROR, f"NumberOfFrames is {nf}")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < 2 or cols < 2:
        raise Rejected(S.DECODE_ERROR, f"Rows x Columns is {rows} x {cols}")
    pixels = rows * cols * (nf or 1)
    if pixels > cfg.max_pixels:
        raise Rejected(S.DECODE_ERROR, f"refused before decoding: Rows*Columns*Frames = {pixels} exceeds "
                                       f"max_pixels {cfg.max_pixels}")
    return nf, frame_time_ms(ds)


def infer_frames(ds) -> int:
    """Frame count when NumberOfFrames is missing: the offset table's entries, else one frame per fragment
    (encapsulated), or the pixel data's length over one frame's size (native)."""
    from pydicom.encaps import parse_basic_offsets, parse_fragments

    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        offsets = parse_basic_offsets(ds.PixelData)
        return len(offsets) if offsets else max(parse_fragments(ds.PixelData)[0], 1)
    per = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.get("BitsAllocated", 8)) // 8
    return max(len(ds.PixelData) // max(per, 1), 1)


def _open(where: bytes):
    """A local file as the OS spells it, or an object (``s3://...``) read whole: pydicom reads the file in full
    anyway, and one GET costs less than the many small range reads of its parser."""
    from eee_ray import storage

    text = os.fsdecode(where)
    if storage.is_uri(text):
        return io.BytesIO(storage.read_bytes(text))
    return open(where, "rb")


def _process(item: InputFile, cfg: IngestConfig, row: dict, out: Outcome, keep: bool) -> None:
    import pydicom

    if item.problem:
        raise Rejected(S.UNREADABLE, item.problem)
    try:
        fh = _open(item.fs)
    except OSError as e:
        why = "symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e).split("\n")[0][:160]
                                                               or type(e).__name__)
        raise Rejected(S.UNREADABLE, f"cannot open: {why}") from None
    with fh:
        size = fh.getbuffer().nbytes if isinstance(fh, io.BytesIO) else os.fstat(fh.fileno()).st_size
        if size == 0:
            raise Rejected(S.NOT_DICOM, "empty file (0 bytes)")
        hdr = read_header(fh)
        if row["subject_id"] is None:
            row["subject_id"] = _numeric_id(hdr, "PatientID")
        if row["study_id"] is None:
            row["study_id"] = _numeric_id(hdr, "StudyID")
        nf, ft = check_header(hdr, cfg, row)
        fh.seek(0)
        try:
            ds = pydicom.dcmread(fh)
        except Exception as e:
            raise Rejected(S.UNREADABLE, f"DICOM cannot be read in full: {type(e).__name__}") from None
    if "PixelData" not in ds:
        raise Rejected(S.DECODE_ERROR, "no PixelData element")
    if nf is None:
        nf = infer_frames(ds)
        ds.NumberOfFrames = nf
        row["n_frames"] = nf
        if nf > cfg.max_frames:
            raise Rejected(S.TOO_MANY_FRAMES, f"{nf} frames (> {cfg.max_frames}; NumberOfFrames missing)")
    try:
        dec = decode(ds, nf, cfg.ecg_roi_fraction, cfg.echo_size, cfg.dct_min_ratio)
    except DecodeError as e:
        raise Rejected(S.DECODE_ERROR, str(e)) from None
    if dec.echo.shape[0] != nf:
        raise Rejected(S.DECODE_ERROR, f"NumberOfFrames is {nf} but {dec.echo.shape[0]} frames decoded")
    strip = dec.first_rgb[echo_rows(dec.first_rgb.shape[0], cfg.ecg_roi_fraction):]
    tr = trace_ecg(strip, cfg.trace, cfg.trace_color)
    if keep:
        out.decoded, out.trace = dec, tr
    if tr.reason is not None:
        raise Rejected(tr.reason, tr.detail)
    if ft is None:
        raise Rejected(S.DECODE_ERROR, "no FrameTime, FrameTimeVector or CineRate: the clip's duration is unknown")
    row.update(status=S.OK, reason=None, detail=f"accepted ({dec.path} decode, {tr.trace_mode} colour window)")
    ecg = resample(tr.ecg_px, nf * ft / 1000.0, cfg.trace.resample_hz)
    out.clip = {"path": row["path"], "subject_id": row["subject_id"], "study_id": row["study_id"], "n_frames": nf,
                "frame_time_ms": ft, "echo": dec.echo, "ecg_px": tr.ecg_px, "ecg": ecg,
                "trace_x0": tr.x0, "trace_x1": tr.x1, **tr.quality}


def process_file(item: InputFile, cfg: IngestConfig, keep: bool = False) -> Outcome:
    """Never raises for a bad file: the outcome's manifest row carries the reason and a detail."""
    row = {"path": item.path, "subject_id": item.subject_id, "study_id": item.study_id, "sop_class_uid": None,
           "n_frames": None, "status": S.REJECTED, "reason": None, "detail": ""}
    out = Outcome(row)
    try:
        _process(item, cfg, row, out, keep)
    except Rejected as r:
        row.update(status=S.REJECTED, reason=r.reason, detail=" ".join(r.detail.split())[:300])
        out.clip = None
    except MemoryError:
        row.update(status=S.REJECTED, reason=S.DECODE_ERROR, detail="out of memory while decoding")
        out.clip = None
    except Exception as e:  # a bug or an exotic file must not stop the job; the type tells what happened
        row.update(status=S.REJECTED, reason=S.DECODE_ERROR, detail=f"unexpected {type(e).__name__}: {str(e)[:160]}")
        out.clip = None
    return out
