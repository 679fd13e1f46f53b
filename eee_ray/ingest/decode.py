"""DICOM pixel data -> (first frame in colour for the ECG strip, every frame as a grayscale 224x224 echo image).

Two paths that must agree (a test checks it):
- fast: JPEG Baseline frames decoded one by one with libjpeg-turbo (``cv2.imdecode``), grayscale with DCT-domain
  downscaling (``IMREAD_REDUCED_GRAYSCALE_2/4/8``) before the final resize; only the first frame is decoded in colour;
- general: ``pydicom`` (pylibjpeg / RLE / native handlers) for every other transfer syntax, PALETTE COLOR through
  its lookup table, MONOCHROME1 inverted, 16-bit scaled to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


class DecodeError(Exception):
    """The pixel data cannot be turned into frames (corrupt, truncated, inconsistent with the header)."""


@dataclass
class Decoded:
    first_rgb: np.ndarray   # (H, W, 3) uint8, full resolution, RGB
    echo: np.ndarray        # (F, S, S) uint8
    path: str               # "jpeg_fast" | "pydicom"


def echo_rows(height: int, roi_fraction: float) -> int:
    """Rows above the ECG strip (the strip is the bottom ``roi_fraction`` of the frame)."""
    return int(height * (1.0 - roi_fraction))


def resize_echo(gray: np.ndarray, rows: int, size: int) -> np.ndarray:
    """The echo region (rows above the strip) -> (size, size), close to INTER_AREA at a tenth of its cost.

    OpenCV's INTER_AREA is a slow scalar loop at non-integer scales, the costliest step after decoding. Bilinear
    interpolation reads two of every ``factor`` input pixels per axis, which is fine while the factor stays below 3;
    larger images are first halved by exact 2-pixel box averages. On real ultrasound frames (708 x 1016 after the
    DCT's halving) this lands closer to INTER_AREA on the full-resolution frame than halving once more would.
    """
    img = gray[:max(rows, 1)]
    while max(img.shape) >= 3 * size:
        h, w = img.shape
        fy, fx = (2 if h >= 2 * size else 1), (2 if w >= 2 * size else 1)
        img = cv2.resize(img[:h - h % fy, :w - w % fx], (w // fx, h // fy), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def reduction(height: int, width: int, roi_fraction: float, size: int, min_ratio: float) -> int:
    """Largest DCT scale factor k in {1, 2, 4, 8} that keeps the echo region at least ``min_ratio * size`` pixels."""
    rows = echo_rows(height, roi_fraction)
    k = 1
    for cand in (2, 4, 8):
        if min(rows, width) / cand >= min_ratio * size:
            k = cand
    return k


def decode_jpeg_frames(frames: list[bytes], height: int, width: int, roi_fraction: float, size: int,
                       min_ratio: float) -> Decoded:
    """The fast path: libjpeg-turbo per frame, DCT-domain downscaled grayscale, colour only for the first frame."""
    k = reduction(height, width, roi_fraction, size, min_ratio)
    flag = _REDUCED.get(k, cv2.IMREAD_GRAYSCALE)
    rows = echo_rows(-(-height // k), roi_fraction) if k > 1 else echo_rows(height, roi_fraction)
    echo = np.empty((len(frames), size, size), np.uint8)
    first = None
    for i, buf in enumerate(frames):
        arr = np.frombuffer(buf, np.uint8)
        if i == 0:
            bgr = cv2.imdecode(arr, cv2.IMREAD_COLOR)
            if bgr is None or bgr.shape[:2] != (height, width):
                raise DecodeError(f"JPEG frame 0 does not decode to {height}x{width}")
            first = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        gray = cv2.imdecode(arr, flag)
        if gray is None:
            raise DecodeError(f"JPEG frame {i} is corrupt")
        echo[i] = resize_echo(gray, rows, size)
    if first is None:
        raise DecodeError("no frames in the pixel data")
    return Decoded(first, echo, "jpeg_fast")


def to_rgb8(ds, arr: np.ndarray) -> np.ndarray:
    """pydicom pixels (any photometric, 8 or 16 bit) -> (F, H, W, 3) uint8 RGB."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1 and arr.ndim == (3 if spp > 1 else 2):
        arr = arr[None]
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8 and spp == 3:
        # colour keeps its meaning (the trace's hue) only under the fixed BitsStored scale, never a per-image stretch
        bits = int(ds.get("BitsStored", 16) or 16)
        arr = np.clip(arr.astype(np.float32) * (255.0 / (2 ** bits - 1)), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        a = arr.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        arr = np.clip((a - lo) * (255.0 / max(hi - lo, 1.0)), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        arr = 255 - arr
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise DecodeError(f"unexpected pixel array shape {arr.shape}")
    return arr


def decode_pydicom(ds, roi_fraction: float, size: int) -> Decoded:
    """The general path: every transfer syntax pydicom can decode, then grayscale, crop and resize per frame."""
    try:
        arr = ds.pixel_array
    except Exception as e:  # every handler raises its own type; all mean "cannot decode"
        raise DecodeError(f"pydicom cannot decode the pixel data: {type(e).__name__}: {str(e)[:160]}") from None
    rgb = to_rgb8(ds, arr)
    rows = echo_rows(rgb.shape[1], roi_fraction)
    echo = np.stack([resize_echo(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), rows, size) for f in rgb])
    return Decoded(np.ascontiguousarray(rgb[0]), echo, "pydicom")


def jpeg_frames(ds, n_frames: int) -> list[bytes]:
    """The encapsulated JPEG frames; raises DecodeError when NumberOfFrames and the fragments disagree."""
    from pydicom.encaps import generate_frames

    try:
        frames = list(generate_frames(ds.PixelData, number_of_frames=n_frames))
    except Exception as e:
        raise DecodeError(f"cannot split the encapsulated pixel data into {n_frames} frames: {str(e)[:160]}") from None
    if len(frames) != n_frames:
        raise DecodeError(f"NumberOfFrames is {n_frames} but the pixel data holds {len(frames)} frames")
    return frames


def decode(ds, n_frames: int, roi_fraction: float, size: int, min_ratio: float) -> Decoded:
    """Fast path for 8-bit JPEG Baseline, falling back to pydicom when libjpeg-turbo refuses a frame."""
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts == JPEG_BASELINE and int(ds.get("BitsAllocated", 8)) == 8:
        frames = jpeg_frames(ds, n_frames)
        try:
            return decode_jpeg_frames(frames, int(ds.Rows), int(ds.Columns), roi_fraction, size, min_ratio)
        except DecodeError as fast:  # e.g. a JPEG flavour libjpeg-turbo rejects; pydicom has the last word
            try:
                return decode_pydicom(ds, roi_fraction, size)
            except DecodeError as general:
                raise DecodeError(f"{fast}; {general}") from None
    return decode_pydicom(ds, roi_fraction, size)
