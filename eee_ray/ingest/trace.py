"""ECG tracing from the first frame's strip (paper section 3.1, docs/contract.md, Ingest): HSV mask, four quality
checks, waveform.

The strip is an RGB uint8 image. Pixels inside the HSV window (OpenCV units, H 0-179) are the trace. Lit pixels are
grouped into connected components; the trace is the chain of large components that never overlap in x (a trace is
a function of x), everything else lit is an outlier (text, markers, the orientation dot in the trace colour).
Then, in order: no trace, pixel coverage, amplitude, continuity, HSV outliers. The waveform is the centre of the
trace pixels per column, positive up, relative to the strip's vertical centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from eee_ray.ingest import schema as S


@dataclass
class TraceConfig:
    """Every threshold of the tracing and its four checks, named; defaults are the paper's window and our tuning."""

    hsv_lower: tuple[int, int, int] = (64, 97, 113)     # paper, OpenCV HSV units
    hsv_upper: tuple[int, int, int] = (91, 255, 198)    # paper
    min_trace_columns: int = 16          # fewer traced columns than this: no_ecg_trace
    min_coverage: float = 0.5            # traced columns / strip width below this: ecg_low_coverage
    edge_margin_px: int = 1              # rows at the strip's top/bottom edge that count as "touching"
    max_edge_columns: int = 2            # more traced columns touching an edge: ecg_amplitude_clipped
    max_gap_px: int = 4                  # a longer run of untraced columns inside the trace: ecg_discontinuous
    max_jump_px: int = 6                 # a larger vertical break per column between traced columns: discontinuous
    max_outlier_fraction: float = 0.05   # more lit pixels off the trace: ecg_hsv_outliers
    chain_overlap_px: int = 3            # x-overlap tolerated between two trace components
    resample_hz: float = 100.0           # rate of the `ecg` column
    # --trace-color auto: the dominant saturated hue of the strip when the paper's window finds no trace
    auto_min_saturation: int = 90
    auto_min_value: int = 90
    auto_hue_halfwidth: int = 8
    auto_min_pixels: int = 40
    cursor_min_height_fraction: float = 0.8   # a lit column run this tall and ...
    cursor_max_width_px: int = 4              # ... at most this wide is a moving cursor line, not the trace


@dataclass
class TraceResult:
    reason: str | None                  # None when accepted
    detail: str
    mask: np.ndarray                    # lit pixels (uint8 0/1), for the QA picture
    trace_mode: str = "paper"
    x0: int = -1
    x1: int = -1
    ecg_px: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    quality: dict = field(default_factory=dict)


def hsv_mask(strip_rgb: np.ndarray, lower, upper) -> np.ndarray:
    hsv = cv2.cvtColor(strip_rgb, cv2.COLOR_RGB2HSV)
    return cv2.inRange(hsv, np.array(lower, np.uint8), np.array(upper, np.uint8)) & 1  # 255 -> 1


def auto_mask(strip_rgb: np.ndarray, cfg: TraceConfig) -> tuple[np.ndarray, int]:
    """Mask of the most common saturated, bright hue in the strip (scanners draw green, teal, cyan, yellow...)."""
    hsv = cv2.cvtColor(strip_rgb, cv2.COLOR_RGB2HSV)
    sat = (hsv[..., 1] >= cfg.auto_min_saturation) & (hsv[..., 2] >= cfg.auto_min_value)
    if sat.sum() < cfg.auto_min_pixels:
        return np.zeros(sat.shape, np.uint8), -1
    hist = np.bincount(hsv[..., 0][sat].astype(np.int64), minlength=180).astype(np.float64)
    circ = np.concatenate([hist[-cfg.auto_hue_halfwidth:], hist, hist[:cfg.auto_hue_halfwidth]])
    window = np.convolve(circ, np.ones(2 * cfg.auto_hue_halfwidth + 1), mode="valid")
    hue = int(np.argmax(window))
    dist = np.abs(((hsv[..., 0].astype(np.int32) - hue + 90) % 180) - 90)
    return (sat & (dist <= cfg.auto_hue_halfwidth)).astype(np.uint8), hue


def cursor_columns(mask: np.ndarray, cfg: TraceConfig) -> np.ndarray:
    """Boolean per column: part of a thin, nearly full-height vertical line (a moving cursor)."""
    tall = mask.sum(axis=0) >= cfg.cursor_min_height_fraction * mask.shape[0]
    out = np.zeros_like(tall)
    x = 0
    while x < tall.size:
        if tall[x]:
            end = x
            while end + 1 < tall.size and tall[end + 1]:
                end += 1
            if end - x + 1 <= cfg.cursor_max_width_px:
                out[x:end + 1] = True
            x = end + 1
        else:
            x += 1
    return out


def trace_chain(mask: np.ndarray, cfg: TraceConfig) -> np.ndarray:
    """The trace's pixels: components taken largest first while their x-extents do not overlap."""
    joined = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    h, w = joined.shape
    # 16-bit labels are about 3x faster; they suffice while even a checkerboard of dots cannot overflow them
    ltype = cv2.CV_16U if -(-h // 2) * -(-w // 2) < 2 ** 16 else cv2.CV_32S
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8, ltype=ltype)
    order = sorted(range(1, n), key=lambda c: -int(stats[c, cv2.CC_STAT_AREA]))
    taken: list[tuple[int, int]] = []
    keep = np.zeros(n, bool)
    for c in order:
        a = int(stats[c, cv2.CC_STAT_LEFT])
        b = a + int(stats[c, cv2.CC_STAT_WIDTH]) - 1
        if all(min(b, d) - max(a, c0) + 1 <= cfg.chain_overlap_px for c0, d in taken):
            taken.append((a, b))
            keep[c] = True
    return keep.view(np.uint8)[labels] & mask  # only the originally lit pixels of kept components


def _runs(flags: np.ndarray) -> int:
    """Length of the longest run of True."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0))


def _max_jump(trace: np.ndarray, cols: np.ndarray) -> int:
    """Largest vertical break between consecutive traced columns, per column of distance (small gaps included)."""
    h = trace.shape[0]
    lit = trace[:, cols]  # every column in cols holds at least one lit pixel
    top = lit.argmax(axis=0)
    bot = h - 1 - lit[::-1].argmax(axis=0)
    gap = np.maximum(top[1:] - bot[:-1], top[:-1] - bot[1:]) - 1
    return int(np.ceil(max((gap / np.diff(cols)).max(initial=0), 0)))


def trace_ecg(strip_rgb: np.ndarray, cfg: TraceConfig, trace_color: str = "paper") -> TraceResult:
    """Trace the ECG in ``strip_rgb`` (H, W, 3) RGB uint8 and run the quality checks."""
    h, w = strip_rgb.shape[:2]
    mask = hsv_mask(strip_rgb, cfg.hsv_lower, cfg.hsv_upper)
    mode = "paper"
    cursor = np.zeros(w, bool)
    if trace_color == "auto":
        if trace_chain(mask, cfg).any(axis=0).sum() < cfg.min_trace_columns:
            mask, hue = auto_mask(strip_rgb, cfg)
            mode = f"auto(h={hue})"
        cursor = cursor_columns(mask, cfg)
        mask[:, cursor] = 0
    trace = trace_chain(mask, cfg)
    traced = trace.any(axis=0)
    n_cols = int(traced.sum())
    if n_cols < cfg.min_trace_columns:
        return TraceResult(S.NO_ECG_TRACE, f"{n_cols} traced columns in the strip (< {cfg.min_trace_columns}) "
                                           f"with the {mode} colour window", mask, mode)
    cols = np.flatnonzero(traced)
    x0, x1 = int(cols[0]), int(cols[-1])
    lit = int(mask.sum())
    m = cfg.edge_margin_px
    edge_cols = int((trace[:m].any(axis=0) | trace[h - m:].any(axis=0)).sum()) if m > 0 else 0
    inside = ~traced[x0:x1 + 1] & ~cursor[x0:x1 + 1]
    quality = {
        "trace_mode": mode,
        "coverage": n_cols / w,
        "edge_columns": edge_cols,
        "max_gap_px": _runs(inside),
        "max_jump_px": _max_jump(trace, cols),
        "outlier_fraction": (lit - int(trace.sum())) / max(lit, 1),
    }
    res = TraceResult(None, "accepted", mask, mode, x0, x1, quality=quality)
    if quality["coverage"] < cfg.min_coverage:
        res.reason, res.detail = S.ECG_LOW_COVERAGE, (
            f"trace covers {quality['coverage']:.2f} of the strip width (< {cfg.min_coverage})")
    elif edge_cols > cfg.max_edge_columns:
        res.reason, res.detail = S.ECG_AMPLITUDE_CLIPPED, (
            f"trace touches the strip's top/bottom edge in {edge_cols} columns (> {cfg.max_edge_columns})")
    elif quality["max_gap_px"] > cfg.max_gap_px:
        res.reason, res.detail = S.ECG_DISCONTINUOUS, (
            f"gap of {quality['max_gap_px']} columns in the trace (> {cfg.max_gap_px})")
    elif quality["max_jump_px"] > cfg.max_jump_px:
        res.reason, res.detail = S.ECG_DISCONTINUOUS, (
            f"vertical break of {quality['max_jump_px']} px in the trace (> {cfg.max_jump_px})")
    elif quality["outlier_fraction"] > cfg.max_outlier_fraction:
        res.reason, res.detail = S.ECG_HSV_OUTLIERS, (
            f"{quality['outlier_fraction']:.1%} of the lit pixels lie off the trace (> {cfg.max_outlier_fraction:.0%})")
    res.ecg_px = column_waveform(trace, x0, x1)
    return res


def column_waveform(trace: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """Centre row of the trace pixels per column in [x0, x1], positive up from the strip's centre; gaps interpolated."""
    h = trace.shape[0]
    sub = trace[:, x0:x1 + 1]
    n = sub.sum(axis=0, dtype=np.int64)
    rows = np.arange(h, dtype=np.int64) @ sub.astype(np.int64)  # exact integer sums of the lit rows
    xs = np.arange(sub.shape[1])
    have = n > 0
    centre = np.interp(xs, xs[have], rows[have] / n[have])
    return ((h - 1) / 2.0 - centre).astype(np.float32)


def resample(ecg_px: np.ndarray, duration_s: float, hz: float) -> np.ndarray:
    """``ecg_px`` spans the clip's duration; resample it linearly to ``hz``."""
    n = max(int(round(duration_s * hz)), 1)
    if ecg_px.size < 2:
        return np.full(n, ecg_px[0] if ecg_px.size else 0.0, np.float32)
    t = np.linspace(0.0, ecg_px.size - 1, n)
    return np.interp(t, np.arange(ecg_px.size), ecg_px).astype(np.float32)
