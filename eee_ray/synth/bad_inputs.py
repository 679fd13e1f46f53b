"""A corpus of broken and unusual echo inputs: what a real archive throws at the ingest.

``write_bad_input_corpus(dir)`` forges each case from one small, valid synthetic cine (``write_us_multiframe``)
with pydicom and returns ``(relative path as the manifest spells it, expected reason)`` per file; the expected
reason is ``None`` for a file the ingest must accept. Tests and ``benchmarks/robustness.py`` share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian

from eee_ray.synth.dicom_writer import write_us_multiframe
from eee_ray.synth.strip import TRACE_RGB, draw_strip

ROWS, COLS = 160, 200            # small frames: the corpus must be quick to write and to ingest
STRIP_Y0 = 112                   # bottom 30 % is the ECG strip (docs/contract.md, Ingest)
FRAMES = 6
FRAME_TIME_MS = 33.3
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PALETTE_TRACE_INDEX = 255        # the palette entry that holds the trace colour


def _ecg_columns(n: int, beats: float = 3.0) -> np.ndarray:
    """A plausible lead (mV per column): narrow R spikes on a slow T wave."""
    t = np.linspace(0.0, beats, n, endpoint=False) % 1.0
    return 1.2 * np.exp(-((t - 0.3) / 0.02) ** 2) + 0.25 * np.exp(-((t - 0.6) / 0.06) ** 2)


def _frames(defect: str = "none", trace_from: int = 10, trace_to: int = 190) -> np.ndarray:
    """(FRAMES, ROWS, COLS, 3) RGB: a textured grey echo region above a strip drawn by the synth's own drawer."""
    rng = np.random.default_rng(0)
    strip, _ = draw_strip(ROWS - STRIP_Y0, COLS, _ecg_columns(trace_to - trace_from), trace_from, rng, defect)
    if defect == "outliers":  # a block of text-like pixels in the trace colour, off the trace but inside its x range
        strip = draw_strip(ROWS - STRIP_Y0, COLS, 0.3 * _ecg_columns(trace_to - trace_from), trace_from, rng)[0]
        strip[2:9, 80:110] = TRACE_RGB
    yy, xx = np.mgrid[0:STRIP_Y0, 0:COLS]
    frames = np.empty((FRAMES, ROWS, COLS, 3), np.uint8)
    for k in range(FRAMES):
        echo = 60 + 50 * np.sin(xx / 9.0 + k) * np.cos(yy / 7.0) + rng.normal(0, 6, (STRIP_Y0, COLS))
        frames[k, :STRIP_Y0] = np.clip(echo, 0, 255).astype(np.uint8)[..., None]
        frames[k, STRIP_Y0:] = strip
    return frames


def _cine(path: Path, frames: np.ndarray | None = None, **tags) -> Path:
    return write_us_multiframe(path, _frames() if frames is None else frames, FRAME_TIME_MS, **tags)


def _edit(path: Path, change: Callable[[pydicom.Dataset], None], frames: np.ndarray | None = None) -> Path:
    """Write a valid cine at ``path``, then rewrite it with ``change`` applied (no validity checks on save)."""
    _cine(path, frames)
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=False)
    return path


def _native(ds: pydicom.Dataset, pixels: np.ndarray, photometric: str) -> None:
    """Replace the JPEG frames by uncompressed ``pixels`` (F, H, W[, 3]) of any integer type."""
    bits = pixels.dtype.itemsize * 8
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 3 if pixels.ndim == 4 else 1
    if pixels.ndim == 4:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    del ds.LossyImageCompression
    ds.PixelData = np.ascontiguousarray(pixels).astype(f"<u{bits // 8}").tobytes()
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"


def _palette(ds: pydicom.Dataset) -> None:
    """PALETTE COLOR: grey ramp for the echo, one entry (255) for the trace colour."""
    rgb = _frames()
    idx = rgb[..., 0].copy()                      # grey image: R = G = B except on the trace
    idx = np.minimum(idx, PALETTE_TRACE_INDEX - 1)
    idx[(rgb == TRACE_RGB).all(axis=-1)] = PALETTE_TRACE_INDEX
    _native(ds, idx.astype(np.uint8), "PALETTE COLOR")
    for i, name in enumerate(("Red", "Green", "Blue")):
        lut = np.arange(256, dtype=np.uint16) * 257
        lut[PALETTE_TRACE_INDEX] = TRACE_RGB[i] * 257
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        ds[f"{name}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{name}PaletteColorLookupTableData", lut.astype("<u2").tobytes())
        ds[f"{name}PaletteColorLookupTableData"].VR = "OW"


def _fragments(ds: pydicom.Dataset, change: Callable[[list[bytes]], list[bytes]]) -> None:
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))
    ds.PixelData = encapsulate(change(frames), has_bot=True)


def _zero_length_items(ds: pydicom.Dataset) -> None:
    """Encapsulated pixel data whose frame items are all 0 bytes long (pydicom refuses to write such frames)."""
    item = b"\xfe\xff\x00\xe0" + (0).to_bytes(4, "little")
    ds.PixelData = item * (1 + int(ds.NumberOfFrames))   # empty offset table, then one empty item per frame


def _corrupt(frames: list[bytes]) -> list[bytes]:
    """Frame 2 becomes random bytes without JPEG markers (neither libjpeg-turbo nor pylibjpeg can decode it)."""
    rng = np.random.default_rng(1)
    return [*frames[:2], rng.integers(0, 255, len(frames[2]), dtype=np.uint8).tobytes(), *frames[3:]]


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def display(rel: bytes) -> str:
    """How the manifest spells a relative path whose bytes are not UTF-8 (backslash escapes)."""
    return rel.decode("utf-8", "backslashreplace")


def _readable_after_chmod(path: Path) -> bool:
    os.chmod(path, 0)
    return os.access(path, os.R_OK)  # root reads anything: then the file is simply a good cine


def write_bad_input_corpus(root: str | Path) -> list[tuple[str, str | None]]:
    """Write the corpus under ``root`` (created); returns ``(manifest path, expected reason or None)`` per file.

    Besides the files, ``root/loop_dir/up`` is a directory symlink back to ``root`` (a loop the walk must cut,
    producing no row of its own).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, str | None]] = []

    def add(name: str, reason: str | None, make: Callable[[Path], object]) -> None:
        make(root / name)
        cases.append((name, reason))

    # accepted: the reference cine and the unusual-but-valid encodings
    add("good_jpeg.dcm", None, _cine)
    add("palette_color.dcm", None, lambda p: _edit(p, _palette))
    add("rgb_native.dcm", None, lambda p: _edit(p, lambda ds: _native(ds, _frames(), "RGB")))
    add("rgb_16bit.dcm", None, lambda p: _edit(p, lambda ds: _native(ds, _frames().astype(np.uint16) * 257, "RGB")))
    add("frames_missing.dcm", None, lambda p: _edit(p, lambda ds: delattr(ds, "NumberOfFrames")))
    # not DICOM at all
    add("empty.dcm", "not_dicom", lambda p: p.write_bytes(b""))
    add("text.dcm", "not_dicom", lambda p: p.write_text("this is a report, not an image\n" * 20))
    add("random_bytes.dcm", "not_dicom", lambda p: p.write_bytes(np.random.default_rng(2).bytes(4096)))
    # damaged files
    add("truncated_header.dcm", "unreadable", lambda p: _truncate(_cine(p), 0.02))
    add("truncated_pixels.dcm", "unreadable", lambda p: _truncate(_cine(p), 0.6))
    # valid DICOM, wrong kind
    add("wrong_sop.dcm", "not_us_multiframe", lambda p: _edit(p, lambda ds: setattr(ds, "SOPClassUID",
                                                                                      SECONDARY_CAPTURE)))
    add("too_many_frames.dcm", "too_many_frames", lambda p: _cine(p, np.repeat(_frames()[:1], 121, axis=0)))
    add("frames_lying_high.dcm", "too_many_frames", lambda p: _edit(p, lambda ds: setattr(ds, "NumberOfFrames", 5000)))
    # pixel data that cannot be decoded
    add("no_pixeldata.dcm", "decode_error", lambda p: _edit(p, lambda ds: delattr(ds, "PixelData")))
    add("frames_lying_more.dcm", "decode_error", lambda p: _edit(p, lambda ds: setattr(ds, "NumberOfFrames", 40)))
    add("frames_lying_fewer.dcm", "decode_error", lambda p: _edit(p, lambda ds: setattr(ds, "NumberOfFrames", 3)))
    add("frames_zero.dcm", "decode_error", lambda p: _edit(p, lambda ds: setattr(ds, "NumberOfFrames", 0)))
    add("zero_size_rows.dcm", "decode_error", lambda p: _edit(p, lambda ds: setattr(ds, "Rows", 0)))
    add("zero_length_fragments.dcm", "decode_error",
        lambda p: _edit(p, _zero_length_items))
    add("corrupt_jpeg.dcm", "decode_error", lambda p: _edit(p, lambda ds: _fragments(ds, _corrupt)))
    add("huge_dimensions.dcm", "decode_error",
        lambda p: _edit(p, lambda ds: (setattr(ds, "Rows", 65535), setattr(ds, "Columns", 65535))))
    add("no_frame_time.dcm", "decode_error",
        lambda p: _edit(p, lambda ds: [delattr(ds, k) for k in ("FrameTime", "CineRate", "FrameIncrementPointer")]))
    # decodable, but the ECG strip is unusable
    add("monochrome.dcm", "no_ecg_trace",
        lambda p: _edit(p, lambda ds: _native(ds, _frames()[..., 1], "MONOCHROME2")))
    add("monochrome_16bit.dcm", "no_ecg_trace",
        lambda p: _edit(p, lambda ds: _native(ds, _frames()[..., 1].astype(np.uint16) * 16, "MONOCHROME2")))
    add("no_trace.dcm", "no_ecg_trace", lambda p: _cine(p, _frames("no_trace")))
    # 25 columns: shorter than the minimum extent (a trace over a quarter of the band is normal and accepted)
    add("low_coverage.dcm", "ecg_low_coverage", lambda p: _cine(p, _frames(trace_from=10, trace_to=35)))
    add("clipped.dcm", "ecg_amplitude_clipped", lambda p: _cine(p, _frames("clipped")))
    add("gap.dcm", "ecg_discontinuous", lambda p: _cine(p, _frames("gap")))
    add("outliers.dcm", "ecg_hsv_outliers", lambda p: _cine(p, _frames("outliers")))
    # file-system oddities
    odd = os.fsdecode(b"caf\xe9_latin1_\xff.dcm")      # not UTF-8: the manifest escapes the bytes
    _cine(root / odd)
    cases.append((display(os.fsencode(odd)), None))
    perm = root / "no_permission.dcm"
    _cine(perm)
    cases.append((perm.name, None if _readable_after_chmod(perm) else "unreadable"))
    os.symlink("loop_b.dcm", root / "loop_a.dcm")
    os.symlink("loop_a.dcm", root / "loop_b.dcm")
    cases += [("loop_a.dcm", "unreadable"), ("loop_b.dcm", "unreadable")]
    os.symlink("missing_target.dcm", root / "dangling.dcm")
    cases.append(("dangling.dcm", "unreadable"))
    (root / "loop_dir").mkdir()
    os.symlink("..", root / "loop_dir" / "up")
    return cases

