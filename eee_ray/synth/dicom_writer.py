"""Ultrasound Multi-frame Image Storage writer: JPEG Baseline YBR_FULL_422 frames, like MIMIC-IV-ECHO (docs/contract.md,
MIMIC-IV-ECHO).

Deterministic: UIDs derive from the tags' content (``generate_uid`` with entropy sources), never from the clock.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from eee_ray.io import atomic_write

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

# Synthetic, obviously fake identifying values: the ingest must drop them (docs/contract.md, Ingest "no PHI").
DEFAULT_TAGS: dict[str, Any] = {
    "PatientName": "SYNTHETIC^PATIENT",
    "PatientID": "SYNTH0000",
    "PatientBirthDate": "21000101",
    "PatientSex": "O",
    "AccessionNumber": "SYNACC0000",
    "StudyID": "0",
    "StudyDate": "21800101",
    "StudyTime": "120000",
    "ContentDate": "21800101",
    "ContentTime": "120000",
    "InstitutionName": "Synthetic Heart Institute",
    "ReferringPhysicianName": "SYNTHETIC^REFERRER",
    "Manufacturer": "eee_ray synth",
    "ManufacturerModelName": "SYN-US 1",
    "Modality": "US",
    "SeriesNumber": "1",
    "InstanceNumber": "1",
}


def encode_jpeg(frame_rgb: np.ndarray, quality: int = 90) -> bytes:
    """One RGB frame -> baseline JPEG with 4:2:2 chroma subsampling (what YBR_FULL_422 declares)."""
    buf = io.BytesIO()
    Image.fromarray(frame_rgb, "RGB").save(buf, format="JPEG", quality=quality, subsampling=1, optimize=False)
    return buf.getvalue()


def _us_multiframe(tags: dict[str, Any], transfer_syntax: str, *seed: str) -> Dataset:
    """An Ultrasound Multi-frame dataset with its file meta, the fake default tags overridden by ``tags``, and UIDs
    not given derived deterministically from the tags and ``seed``."""
    values = {**DEFAULT_TAGS, **tags}
    seed_text = [repr(sorted((k, str(v)) for k, v in values.items())), *seed]
    study_uid = values.pop("StudyInstanceUID", None) or generate_uid(entropy_srcs=["study", *seed_text[:1]])
    series_uid = values.pop("SeriesInstanceUID", None) or generate_uid(entropy_srcs=["series", *seed_text])
    sop_uid = values.pop("SOPInstanceUID", None) or generate_uid(entropy_srcs=["sop", *seed_text])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sop_uid, study_uid, series_uid
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def write_us_multiframe(path: str | Path, frames_rgb: np.ndarray, frame_time_ms: float, *, jpeg_quality: int = 90,
                        **tags: Any) -> Path:
    """Write ``frames_rgb`` (F x H x W x 3 uint8) as an Ultrasound Multi-frame Image Storage file.

    ``tags`` are DICOM keywords (``PatientName="X^Y"``, ``StudyInstanceUID=...``) that override the fake defaults;
    UIDs not given are derived deterministically from the other tags and the pixel bytes.
    """
    frames_rgb = np.asarray(frames_rgb)
    if frames_rgb.ndim != 4 or frames_rgb.shape[-1] != 3 or frames_rgb.dtype != np.uint8:
        raise ValueError(f"frames_rgb must be (F, H, W, 3) uint8, got {frames_rgb.shape} {frames_rgb.dtype}")
    n, rows, cols, _ = frames_rgb.shape
    encoded = [encode_jpeg(np.ascontiguousarray(f), jpeg_quality) for f in frames_rgb]
    ds = _us_multiframe(tags, JPEGBaseline8Bit, str(frame_time_ms), str(len(encoded[0])))
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.NumberOfFrames = n
    ds.FrameTime = f"{frame_time_ms:.4g}"
    ds.CineRate = int(round(1000.0 / frame_time_ms))
    ds.FrameIncrementPointer = (0x0018, 0x1063)  # FrameTime
    ds.PixelData = encapsulate(encoded, has_bot=True)
    ds["PixelData"].VR = "OB"
    return atomic_write(path, lambda p: ds.save_as(p, enforce_file_format=True))


def write_palette_rle(path: str | Path, frames_idx: np.ndarray, lut_rgb: np.ndarray, frame_time_ms: float,
                      **tags: Any) -> Path:
    """Write ``frames_idx`` (F x H x W uint8 palette indices) with the 256-entry ``lut_rgb`` (uint8 RGB) as a
    PALETTE COLOR, RLE Lossless Ultrasound Multi-frame file (older scanners' flavour); UIDs as above."""
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    frames_idx = np.ascontiguousarray(frames_idx, np.uint8)
    n, rows, cols = frames_idx.shape
    ds = _us_multiframe(tags, ExplicitVRLittleEndian, str(frame_time_ms), str(int(frames_idx.sum())))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = n
    ds.FrameTime = f"{frame_time_ms:.4g}"
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    lut16 = (np.asarray(lut_rgb, np.uint16) * 257).astype("<u2")
    for i, name in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", lut16[:, i].tobytes())
    ds.PixelData = frames_idx.tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom")
    return atomic_write(path, lambda p: ds.save_as(p, enforce_file_format=True))
