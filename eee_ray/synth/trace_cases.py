"""Hard cases for the ECG tracer, one first frame at a time, each with its ground truth.

Real scanners draw strips that the default synthetic data set does not: 1-2 px anti-aliased strokes, colours anywhere
in the paper's HSV window (dark and light greens), traces over part of the width at either side, other hues (cyan,
yellow) for ``--trace-color auto``, cursor lines, the grey sector reaching into the bottom 30 %, text rows in the band,
Doppler colour, PALETTE COLOR frames. ``render_case(kind, seed)`` draws one such frame in memory and returns it as
the ingest would decode it (JPEG 4:2:2 round trip, or the palette's exact colours), with the drawn trace's per-column
centre, its expected verdict and its R-peak count. ``write_case_dicom`` writes the same frame as a small cine.

The ECG comes from PTB-XL lead II (``ptbxl_dir``) when given, else from the synthetic physiology model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from eee_ray.synth.strip import TRACE_RGB, column_signal, draw_strip

CLEAN = ("easy", "thin_aa", "thin_2px", "dark_green", "light_green", "partial_left", "partial_right", "cursor",
         "sector_in_band", "text_rows", "auto_cyan", "auto_yellow", "acuson_like", "palette_rle")
DEFECTS = ("gap", "break", "clipped", "no_trace", "short", "text_in_trace_colour", "doppler_in_band", "markers_only")
KINDS = CLEAN + DEFECTS
# The verdict(s) a defect must get; the first is the one named in the table.
EXPECTED = {"gap": ("ecg_discontinuous",), "break": ("ecg_discontinuous",), "clipped": ("ecg_amplitude_clipped",),
            "no_trace": ("no_ecg_trace",), "short": ("ecg_low_coverage", "no_ecg_trace"),
            "text_in_trace_colour": ("ecg_hsv_outliers", "no_ecg_trace"),
            "doppler_in_band": ("no_ecg_trace", "ecg_hsv_outliers"),
            "markers_only": ("no_ecg_trace", "ecg_hsv_outliers")}
AUTO_KINDS = ("auto_cyan", "auto_yellow", "acuson_like", "palette_rle", "doppler_in_band", "markers_only")
PAPER_LO, PAPER_HI = (64, 97, 113), (91, 255, 198)    # the paper's window (OpenCV HSV), where the green cases draw
FS = 500.0


@dataclass
class TraceCase:
    """One rendered first frame and what was drawn in its strip (the bottom ``rows - strip_y0`` rows)."""

    kind: str
    seed: int
    frame: np.ndarray                 # (rows, cols, 3) uint8 RGB as decoded (after the encoding's round trip)
    strip_y0: int
    trace_color: str                  # the --trace-color this case is meant for: paper | auto
    expected: tuple                   # (None,) for clean cases, else the acceptable rejection reasons
    x0: int | None = None             # first/last drawn trace column
    x1: int | None = None
    trace_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # centre per column, up from mid
    r_peaks: int = 0                  # R peaks in the drawn trace (same detector as on the traced one)
    seconds: float = 0.0              # ECG time the drawn trace shows
    encoding: str = "jpeg422"         # jpeg422 | palette | rgb
    drawn: np.ndarray | None = None   # the frame before encoding (RGB), what write_case_dicom encodes
    jpeg_quality: int = 90
    index: np.ndarray | None = None   # palette indices (palette encoding only)
    lut: np.ndarray | None = None     # (256, 3) uint8 palette

    @property
    def strip(self) -> np.ndarray:
        return self.frame[self.strip_y0:]


def hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    px = np.array([[[h, s, v]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0])


@functools.lru_cache(maxsize=4)
def _ptbxl_lead_ii(ptbxl_dir: str, n: int = 200) -> np.ndarray:
    """Lead II (mV, 500 Hz, 10 s) of the first ``n`` PTB-XL records."""
    import wfdb

    root = Path(ptbxl_dir)
    paths = sorted((root / "records500").glob("*/*_hr.hea"))[:n]
    out = []
    for p in paths:
        rec = wfdb.rdrecord(str(p.with_suffix("")))
        sig = rec.p_signal[:, rec.sig_name.index("II")]
        out.append(np.nan_to_num(sig.astype(np.float64)))
    return np.stack(out)


def ecg_source(rng: np.random.Generator, seconds: float, ptbxl_dir: str | None) -> np.ndarray:
    """``seconds`` of one lead II at 500 Hz (mV): a PTB-XL window or the physiology model."""
    n = int(round(seconds * FS))
    if ptbxl_dir:
        bank = _ptbxl_lead_ii(str(ptbxl_dir))
        rec = bank[int(rng.integers(len(bank)))]
        s = int(rng.integers(0, max(1, rec.size - n)))
        return rec[s:s + n]
    from eee_ray.synth.physiology import LEAD_NAMES, ecg_leads, patient_morphology

    morph = patient_morphology(rng, *rng.normal(0, 1, 3), af=bool(rng.random() < 0.1))
    sig, _ = ecg_leads(rng, morph, morph.heart_rate, seconds)
    return sig[:n, LEAD_NAMES.index("II")]


def r_peak_count(y: np.ndarray, cols_per_s: float) -> int:
    """R peaks in a traced or drawn waveform (px per column): excursions of the QRS polarity beyond 45 % of the
    signal's range above its median, runs closer than 0.25 s merged. The same detector runs on the drawn and the
    traced waveform, so the counts compare what the tracing kept."""
    y = np.asarray(y, np.float64)
    y = y[np.isfinite(y)]
    if y.size < 8:
        return 0
    y = y - np.median(y)
    hi, lo = np.percentile(y, 99.5), np.percentile(y, 0.5)
    if hi - lo <= 0:
        return 0
    y = y if hi >= -lo else -y
    above = np.flatnonzero(y > 0.45 * (hi - lo))
    if above.size == 0:
        return 0
    starts = np.concatenate([[above[0]], above[1:][np.diff(above) > max(1.0, 0.25 * cols_per_s)]])
    return int(starts.size)


def _speckle_sector(rng: np.random.Generator, rows: int, cols: int, depth_rows: float) -> np.ndarray:
    """Grey echo sector (uint8 image) from an apex at the top centre down to ``depth_rows``."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    apex = 0.03 * rows
    r = np.hypot(xx - cols / 2, yy - apex)
    half = np.radians(rng.uniform(36, 44))
    fan = (r < depth_rows) & (np.abs(np.arctan2(xx - cols / 2, yy - apex)) < half)
    tissue = 60.0 + 40.0 * np.sin(r / rng.uniform(12, 30)) ** 2 - 25.0 * r / rows
    speckle = rng.rayleigh(0.8, (rows, cols)).astype(np.float32)
    return np.clip(np.where(fan, tissue * speckle, 0), 0, 255).astype(np.uint8)


def _doppler(rng: np.random.Generator, rows: int, cols: int, y_lo: float, y_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """A colour-Doppler patch (red/orange away, blue/cyan towards): RGB image and its mask."""
    cy, cx = rng.uniform(y_lo, y_hi) * rows, rng.uniform(0.35, 0.65) * cols
    ry, rx = rng.uniform(0.08, 0.14) * rows, rng.uniform(0.08, 0.16) * cols
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    vel = np.sin((xx - cx) / rx * 2.5 + rng.normal(0, 0.6, (rows, cols)).astype(np.float32))
    mask = (d < 1) & (np.abs(vel) > 0.15)
    rgb = np.zeros((rows, cols, 3), np.uint8)
    pos, neg = mask & (vel > 0), mask & (vel <= 0)
    a = np.clip(np.abs(vel) * 255, 60, 255).astype(np.uint8)
    rgb[pos, 0], rgb[pos, 1] = a[pos], (a[pos] * 0.45).astype(np.uint8)
    rgb[neg, 2], rgb[neg, 1] = a[neg], (a[neg] * 0.55).astype(np.uint8)
    return rgb, mask


def _stroke_alpha(h: int, w: int, xs: np.ndarray, rows: np.ndarray, thickness: int, aa: bool) -> np.ndarray:
    """Coverage (0..1 float32) of a polyline through (xs, rows), drawn with sub-pixel precision."""
    canvas = np.zeros((h, w), np.uint8)
    pts = np.stack([xs, rows], axis=1) * 16.0
    cv2.polylines(canvas, [pts.round().astype(np.int32).reshape(-1, 1, 2)], False, 255, thickness,
                  cv2.LINE_AA if aa else cv2.LINE_8, shift=4)
    return canvas.astype(np.float32) / 255.0


def _centre(alpha: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """Coverage-weighted centre row per column in [x0, x1], positive up from the strip's centre (NaN where empty)."""
    sub = alpha[:, x0:x1 + 1].astype(np.float64)
    n = sub.sum(axis=0)
    rows = np.arange(alpha.shape[0]) @ sub
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(n > 0.05, rows / n, np.nan)
    return ((alpha.shape[0] - 1) / 2.0 - c).astype(np.float32)


def _text(img: np.ndarray, rng: np.random.Generator, y: int, colour, scale: float, x: int | None = None) -> None:
    words = ["HR 72 bpm", "25 mm/s", "II", "ECG", "1.0 mV", "FR 30 Hz", "A4C", "MI 1.1", "TIS 0.4"]
    text = "  ".join(rng.choice(words, size=int(rng.integers(2, 4)), replace=False))
    x = int(rng.uniform(0.02, 0.5) * img.shape[1]) if x is None else x
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


# Palette layout (PALETTE COLOR case): 0..191 greys, 192..207 the trace colour over black at 16 coverages,
# 208..255 Doppler colours.
def _palette(trace_rgb) -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[:192] = np.round(np.linspace(0, 255, 192))[:, None].astype(np.uint8)
    a = np.linspace(1 / 16, 1, 16)[:, None]
    lut[192:208] = np.round(a * np.array(trace_rgb, np.float64)[None, :] + (1 - a) * 6).astype(np.uint8)
    k = np.linspace(0.3, 1.0, 24)[:, None]
    lut[208:232] = np.round(k * np.array([255, 115, 0])).astype(np.uint8)
    lut[232:256] = np.round(k * np.array([0, 140, 255])).astype(np.uint8)
    return lut


def render_case(kind: str, seed: int, rows: int = 480, cols: int = 640, ptbxl_dir: str | None = None,
                jpeg_quality: int | None = None, strip_fraction: float = 0.30) -> TraceCase:
    """Draw one first frame of case ``kind`` (see ``KINDS``) from ``seed``; return it as decoded, with its truth."""
    if kind not in KINDS:
        raise ValueError(f"unknown trace case {kind!r}; one of {', '.join(KINDS)}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    y0 = int(rows * (1.0 - strip_fraction))
    h = rows - y0
    mode = "auto" if kind in AUTO_KINDS else "paper"
    case = TraceCase(kind, seed, np.zeros((rows, cols, 3), np.uint8), y0, mode, EXPECTED.get(kind, (None,)))

    # background: the echo sector (into the band for some cases), Doppler colour, grey text
    deep = kind in ("sector_in_band", "acuson_like", "no_trace", "doppler_in_band") or rng.random() < 0.25
    depth = rng.uniform(rows * 0.9, rows * 1.05) if deep else rng.uniform(0.6, 0.68) * rows
    grey = _speckle_sector(rng, rows, cols, depth)
    frame = np.repeat(grey[:, :, None], 3, axis=2)
    frame[y0:] = np.maximum(frame[y0:], 6)
    doppler = None
    if kind in ("palette_rle", "doppler_in_band") or (kind in AUTO_KINDS and rng.random() < 0.5):
        y_hi = 0.85 if kind == "doppler_in_band" else 0.5
        d_rgb, d_mask = _doppler(rng, rows, cols, 0.3 if kind != "doppler_in_band" else 0.7, y_hi)
        frame[d_mask] = d_rgb[d_mask]
        doppler = d_mask
    for i in range(2):
        _text(frame, rng, int((i + 1) * 0.05 * rows) + 6, (200, 200, 200), max(0.35, rows / 1100))
    if kind in ("text_rows", "acuson_like", "no_trace") or rng.random() < 0.3:
        _text(frame, rng, y0 + int(rng.integers(10, 18)), (235, 235, 235), max(0.35, h / 360))

    # the trace's colour and stroke
    if kind == "easy":
        colour = TRACE_RGB
    elif kind in ("auto_cyan", "acuson_like", "markers_only"):
        colour = hsv_to_rgb(rng.uniform(88, 100), rng.uniform(170, 255), rng.uniform(200, 255))
    elif kind == "auto_yellow":
        colour = hsv_to_rgb(rng.uniform(24, 32), rng.uniform(170, 255), rng.uniform(200, 255))
    elif kind == "dark_green":
        colour = hsv_to_rgb(rng.uniform(66, 89), rng.uniform(100, 140), rng.uniform(118, 135))
    elif kind == "light_green":
        colour = hsv_to_rgb(rng.uniform(66, 89), rng.uniform(100, 255), rng.uniform(180, 196))
    else:  # anywhere inside the paper's window, a little in from its edges
        colour = hsv_to_rgb(rng.uniform(PAPER_LO[0] + 2, PAPER_HI[0] - 2), rng.uniform(PAPER_LO[1] + 5, 255),
                            rng.uniform(PAPER_LO[2] + 5, PAPER_HI[2] - 3))
    thickness = 2 if kind in ("thin_2px",) else 1 if kind in ("thin_aa", "acuson_like") else int(rng.integers(1, 3))

    # the trace's extent
    if kind in ("partial_left", "partial_right"):
        frac = rng.uniform(0.20, 0.60)
        margin = rng.uniform(0.02, 0.10)
        x0 = margin * cols if kind == "partial_left" else (1 - margin - frac) * cols
    elif kind == "acuson_like":
        frac, x0 = rng.uniform(0.20, 0.25), rng.uniform(0.02, 0.05) * cols
    elif kind == "palette_rle":
        frac, x0 = rng.uniform(0.45, 0.52), rng.uniform(0.01, 0.04) * cols
    elif kind == "easy":  # the default data set's geometry
        x0 = cols * rng.uniform(0.05, 0.09)
        frac = (int(cols * rng.uniform(0.92, 0.97)) - int(x0) + 1) / cols
    elif kind == "short":
        frac, x0 = rng.uniform(0.03, 0.07), rng.uniform(0.05, 0.5) * cols
    else:
        frac, x0 = rng.uniform(0.67, 0.90), rng.uniform(0.05, 0.15) * cols
    x0 = int(x0)
    n = min(max(int(round(frac * cols)), 8), cols - 1 - x0)
    sweep_s = rng.uniform(4.0, 6.0) if kind not in ("acuson_like",) else rng.uniform(6.5, 8.0)  # full width
    seconds = n / cols * sweep_s
    strip = frame[y0:]
    draw = kind not in ("no_trace", "doppler_in_band", "markers_only")
    alpha = None
    if draw:
        sig = ecg_source(rng, seconds + 0.05, ptbxl_dir)
        col_mv = column_signal(sig, FS, seconds, n)
        if kind == "easy":
            s, truth = draw_strip(h, cols, col_mv, x0, rng, "none")
            lit = (s != 6).any(axis=2) & (s == np.array(TRACE_RGB, np.uint8)).all(axis=2)
            strip[lit] = TRACE_RGB
            case.x0, case.x1, case.trace_y = truth.x0, truth.x1, truth.trace_y
        else:
            lo, hi = float(col_mv.min()), float(col_mv.max())
            span = {"clipped": rng.uniform(1.6, 2.4), "break": rng.uniform(0.3, 0.45)}.get(kind, rng.uniform(0.45, 0.8))
            gain = span * h / max(hi - lo, 0.2)
            rows_f = (h - 1) / 2.0 - (col_mv - (hi + lo) / 2.0) * gain
            if kind == "clipped":  # the scanner clamps the trace to its band
                rows_f = np.clip(rows_f, 0.5, h - 1.5)
            xs = x0 + np.arange(n, dtype=np.float64)
            alpha = np.zeros((h, cols), np.float32)
            if kind == "break":  # the trace resumes >= 40 px higher or lower after a 4-column erase bar
                skip = 4
                still = np.abs(rows_f[skip:] - rows_f[:-skip]) < 2.0   # flat across the erase bar
                flat = np.flatnonzero(still[:-1]) + 1
                flat = flat[(flat > 0.3 * n) & (flat < 0.7 * n)]
                cut = int(rng.choice(flat)) if flat.size else n // 2
                for _ in range(20):       # first part up against the top, second down against the bottom ...
                    a, b = rows_f[:cut].copy(), rows_f[cut:].copy()
                    a -= a.min() - 3
                    b += (h - 4) - b.max()
                    room = float(b[skip] - a[-1])
                    if room >= 44:        # ... with room for a 40 px break (else a smaller amplitude)
                        break
                    rows_f = (rows_f - rows_f.mean()) * 0.85 + rows_f.mean()
                sep = rng.uniform(40, max(41.0, room))
                b -= max(0.0, room - sep)
                if rng.random() < 0.5:    # or the other way round
                    a, b = (h - 1) - a, (h - 1) - b
                rows_f = np.concatenate([a, b])
                alpha = np.maximum(_stroke_alpha(h, cols, xs[:cut], rows_f[:cut], thickness, True),
                                   _stroke_alpha(h, cols, xs[cut + skip:], rows_f[cut + skip:], thickness, True))
                alpha[:, x0 + cut:x0 + cut + skip] = 0  # the bar erases whole columns (the strokes' caps too)
            else:
                alpha = _stroke_alpha(h, cols, xs, rows_f, thickness, True)
            if kind == "gap":
                g = int(rng.integers(10, 41))
                g0 = int(rng.integers(n // 4, max(n // 4 + 1, 3 * n // 4 - g)))
                alpha[:, x0 + g0:x0 + g0 + g] = 0
            case.x0, case.x1 = x0, x0 + n - 1
            case.trace_y = _centre(alpha, x0, x0 + n - 1)
            a = alpha[:, :, None]
            strip[:] = np.round(strip * (1 - a) + np.array(colour, np.float32) * a).astype(np.uint8)
        case.seconds = seconds
        case.r_peaks = r_peak_count(case.trace_y, n / seconds)

    # what is drawn on top of the trace: cursors, text and markers in the trace's hue
    if kind in ("cursor", "acuson_like") or (kind in CLEAN and rng.random() < 0.15):
        cx = int(case.x0 - rng.integers(1, 4)) if kind == "acuson_like" else int(rng.uniform(0.2, 0.8) * cols)
        c_col = (255, 255, 255) if kind == "acuson_like" or rng.random() < 0.5 else colour
        cv2.line(frame, (cx, y0), (cx, rows - 1), c_col, int(rng.integers(1, 3)))
    if kind == "text_in_trace_colour":
        for k in range(int(rng.integers(2, 4))):
            _text(frame, rng, y0 + 14 + 16 * k, colour, max(0.45, h / 260))
    if kind == "markers_only":
        for _ in range(int(rng.integers(6, 14))):
            mx, my = int(rng.uniform(0.05, 0.95) * cols), int(rng.uniform(0.1, 0.9) * h) + y0
            s = int(rng.integers(3, 7))
            cv2.fillPoly(frame, [np.array([[mx, my - s], [mx - s, my + s], [mx + s, my + s]], np.int32)], colour)
        _text(frame, rng, y0 + 20, colour, max(0.45, h / 260))
        cv2.line(frame, (int(0.02 * cols), rows - 6), (int(0.2 * cols), rows - 6), colour, 1)

    if kind == "palette_rle":
        case.encoding = "palette"
        case.lut = _palette(colour)
        idx = np.round(frame.mean(axis=2) * 191 / 255).astype(np.uint8)
        if doppler is not None:
            warm = doppler & (frame[..., 0] > frame[..., 2])
            mag = np.clip(frame.max(axis=2) / 255.0, 0.3, 1.0)
            k = np.round((mag - 0.3) / 0.7 * 23).astype(np.uint8)
            idx[warm] = 208 + k[warm]
            idx[doppler & ~warm] = 232 + k[doppler & ~warm]
        if alpha is not None:
            lvl = np.round(alpha * 16).astype(np.int32)
            on = lvl >= 1
            strip_idx = idx[y0:]
            strip_idx[on] = (191 + np.minimum(lvl, 16))[on].astype(np.uint8)
        case.index = idx
        case.frame = case.drawn = case.lut[idx]
    else:
        case.drawn = frame
        case.jpeg_quality = q = jpeg_quality or int(rng.integers(80, 96))
        from eee_ray.synth.dicom_writer import encode_jpeg

        buf = np.frombuffer(encode_jpeg(frame, q), np.uint8)
        case.frame = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return case


def write_case_dicom(case: TraceCase, path: str | Path, n_frames: int = 4, frame_time_ms: float = 33.3) -> Path:
    """The case's frame as a small cine: JPEG Baseline 4:2:2, or PALETTE COLOR RLE for the palette case."""
    from eee_ray.synth.dicom_writer import write_palette_rle, write_us_multiframe

    tags = {"PatientID": f"{9_000_000 + case.seed}", "StudyID": f"{KINDS.index(case.kind)}"}
    if case.encoding == "palette":
        frames = np.repeat(case.index[None], n_frames, axis=0)
        return write_palette_rle(path, frames, case.lut, frame_time_ms, **tags)
    frames = np.repeat(case.drawn[None], n_frames, axis=0)
    return write_us_multiframe(path, frames, frame_time_ms, jpeg_quality=case.jpeg_quality, **tags)
