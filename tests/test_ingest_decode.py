"""Decoding: the fast libjpeg-turbo path and the general pydicom path agree; the real cines decode; odd files
(corrupt JPEG, lying or missing NumberOfFrames, no PixelData, PALETTE COLOR, MONOCHROME, 16-bit, huge) each get the
right manifest reason without an exception."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from eee_ray.ingest import IngestConfig
from eee_ray.ingest import schema as S
from eee_ray.ingest.decode import decode, decode_jpeg_frames, decode_pydicom, jpeg_frames, reduction
from eee_ray.ingest.discover import InputFile
from eee_ray.ingest.process import process_file
from eee_ray.synth import write_us_multiframe

TRACE_RGB = (0, 165, 94)


def cine(n: int = 6, rows: int = 240, cols: int = 320, seed: int = 0, trace: bool = True) -> np.ndarray:
    """Frames with smooth anatomy-like blobs and speckle on top, an ECG trace in the bottom 30%."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, rows, cols, 3), np.uint8)
    y0 = int(rows * 0.7)
    for i in range(n):
        f = frames[i]
        cv2.ellipse(f, (cols // 2, y0 // 2), (cols // 5 + 2 * i, y0 // 3), 0, 0, 360, (140, 140, 140), -1)
        cv2.circle(f, (cols // 3, y0 // 3), y0 // 6, (60, 60, 60), -1)
        f[:y0] = cv2.GaussianBlur(f[:y0], (0, 0), 3)
        f[:y0] = np.clip(f[:y0].astype(int) + rng.integers(-20, 20, f[:y0].shape), 0, 255).astype(np.uint8)
        if trace:
            x = np.arange(10, cols - 10)
            ys = y0 + (rows - y0) / 2 - 0.3 * (rows - y0) * np.sin(x / 9.0)
            pts = np.stack([x, ys], 1).round().astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(f, [pts], False, TRACE_RGB, 2)
    return frames


def native_cine(path: Path, pixels: np.ndarray, photometric: str, bits: int = 8, **extra) -> Path:
    """An uncompressed US multi-frame file (Explicit VR Little Endian) with the given photometric and depth."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = S.US_MULTIFRAME_SOP
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = S.US_MULTIFRAME_SOP
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames, ds.Rows, ds.Columns = pixels.shape[:3]
    ds.SamplesPerPixel = 3 if pixels.ndim == 4 else 1
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.FrameTime = "33.3"
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"
    ds.save_as(path, enforce_file_format=True)
    return path


def run_one(path: Path, **cfg) -> dict:
    return process_file(InputFile(path.name, bytes(path)), IngestConfig(input=str(path.parent), output="-",
                                                                         **cfg)).manifest


@pytest.mark.parametrize("rows,cols", [(240, 320), (600, 800)])
def test_fast_and_general_paths_agree(tmp_path, rows, cols):
    path = write_us_multiframe(tmp_path / "c.dcm", cine(5, rows, cols), 33.3)
    ds = pydicom.dcmread(path)
    fast = decode_jpeg_frames(jpeg_frames(ds, 5), rows, cols, 0.3, 224, 0.9)
    general = decode_pydicom(ds, 0.3, 224)
    assert fast.echo.shape == general.echo.shape == (5, 224, 224) and fast.echo.dtype == np.uint8
    diff = np.abs(fast.echo.astype(int) - general.echo.astype(int))
    assert diff.mean() <= 3.0, f"mean abs diff {diff.mean():.2f} grey levels (DCT scale {reduction(rows, cols, 0.3, 224, 0.9)})"
    assert np.abs(fast.first_rgb.astype(int) - general.first_rgb.astype(int)).mean() <= 3.0
    assert decode(ds, 5, 0.3, 224, 0.9).path == "jpeg_fast"


def test_dct_downscaling_is_used_on_large_frames():
    assert reduction(600, 800, 0.3, 224, 0.9) == 2
    assert reduction(1200, 1600, 0.3, 224, 0.9) == 4
    assert reduction(240, 320, 0.3, 224, 0.9) == 1


def test_real_cines_decode(shared_data):
    cines = 0
    for path in sorted((shared_data / "dicom").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if str(ds.SOPClassUID) != S.US_MULTIFRAME_SOP:
            continue
        n = int(ds.NumberOfFrames)
        dec = decode(ds, n, 0.3, 224, 0.9)
        assert dec.echo.shape == (n, 224, 224) and dec.echo.dtype == np.uint8, path.name
        assert dec.echo.std() > 5, f"{path.name} decoded to a flat image"
        assert dec.first_rgb.shape == (int(ds.Rows), int(ds.Columns), 3)
        cines += 1
    assert cines == 4  # SonoSite JPEG, ACUSON native + fragmented JPEG, PALETTE COLOR RLE


def test_accepted_file_and_header_only_reasons(tmp_path):
    ok = run_one(write_us_multiframe(tmp_path / "ok.dcm", cine(4), 33.3))
    assert ok["status"] == S.OK and ok["n_frames"] == 4 and ok["reason"] is None
    many = run_one(write_us_multiframe(tmp_path / "many.dcm", cine(6, 120, 160), 33.3), max_frames=5)
    assert (many["reason"], many["n_frames"]) == (S.TOO_MANY_FRAMES, 6)


def test_corrupt_jpeg_fragment_is_a_decode_error(tmp_path):
    path = write_us_multiframe(tmp_path / "c.dcm", cine(4), 33.3)
    ds = pydicom.dcmread(path)
    frames = jpeg_frames(ds, 4)
    frames[2] = frames[2][:40] + bytes(200)  # a truncated, zero-filled frame
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    row = run_one(path)
    assert row["reason"] == S.DECODE_ERROR and "JPEG frame 2 is corrupt" in row["detail"]


def test_number_of_frames_lying_or_missing(tmp_path):
    path = write_us_multiframe(tmp_path / "lie.dcm", cine(4), 33.3)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 9
    ds.save_as(path)
    assert run_one(path)["reason"] == S.DECODE_ERROR
    del ds.NumberOfFrames
    ds.save_as(path)
    row = run_one(path)
    assert (row["status"], row["n_frames"]) == (S.OK, 4)  # inferred from the fragments
    native = native_cine(tmp_path / "lie_native.dcm", cine(3)[..., 0], "MONOCHROME2")
    ds = pydicom.dcmread(native)
    ds.NumberOfFrames = 7
    ds.save_as(native)
    assert run_one(native)["reason"] == S.DECODE_ERROR


def test_no_pixel_data_and_huge_headers(tmp_path):
    path = write_us_multiframe(tmp_path / "nopix.dcm", cine(2), 33.3)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    row = run_one(path)
    assert row["reason"] == S.DECODE_ERROR and "PixelData" in row["detail"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = 30000, 30000, 100
    ds.PixelData = encapsulate([b"\0" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "huge.dcm")
    row = run_one(tmp_path / "huge.dcm")
    assert row["reason"] == S.DECODE_ERROR and "before decoding" in row["detail"]


def test_palette_monochrome_and_16_bit_cines(tmp_path):
    rgb = cine(3)
    # PALETTE COLOR: index 1 is the trace colour, 2..255 greys
    idx = np.full(rgb.shape[:3], 0, np.uint8)
    grey = rgb.mean(axis=-1).astype(np.uint8)
    idx[:] = np.clip(grey, 2, 255)
    idx[(rgb == TRACE_RGB).all(axis=-1)] = 1
    lut = np.arange(256, dtype=np.uint16)
    red, green, blue = lut.copy(), lut.copy(), lut.copy()
    red[1], green[1], blue[1] = TRACE_RGB
    extra = {}
    for name, table in (("Red", red), ("Green", green), ("Blue", blue)):
        extra[f"{name}PaletteColorLookupTableDescriptor"] = [256, 0, 8]
        extra[f"{name}PaletteColorLookupTableData"] = table.astype(np.uint8).tobytes()
    row = run_one(native_cine(tmp_path / "palette.dcm", idx, "PALETTE COLOR", **extra))
    assert row["status"] == S.OK, row["detail"]
    mono = run_one(native_cine(tmp_path / "mono.dcm", grey, "MONOCHROME2"))
    assert mono["reason"] == S.NO_ECG_TRACE
    mono16 = run_one(native_cine(tmp_path / "mono16.dcm", grey.astype(np.uint16) * 200, "MONOCHROME1", bits=16))
    assert mono16["reason"] == S.NO_ECG_TRACE
    rgb16 = run_one(native_cine(tmp_path / "rgb.dcm", rgb, "RGB"))
    assert rgb16["status"] == S.OK, rgb16["detail"]


def test_not_dicom_and_empty_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not a DICOM file\n" * 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert run_one(tmp_path / "notes.txt")["reason"] == S.NOT_DICOM
    row = run_one(tmp_path / "empty.dcm")
    assert row["reason"] == S.NOT_DICOM and "empty" in row["detail"]
