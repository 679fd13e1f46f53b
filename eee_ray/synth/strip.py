"""The ECG strip of a cine (bottom 30%): a dark band with one lead drawn left to right as a 3-px polyline in the
trace colour, and the exact per-column centre of what was drawn (the ingest's ``ecg_px`` ground truth)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Trace colour (RGB): H = 77 (OpenCV 0-179), S = 255, V = 165 sits in the middle of the paper's window
# lower (64, 97, 113) upper (91, 255, 198), far enough inside that JPEG 4:2:2 chroma blur keeps it there.
TRACE_RGB = (0, 165, 94)
STRIP_BG = 6
TRACE_HALF = 1            # lit rows: centre +- 1 -> 3 px wide on flat parts
NORMAL_SPAN = 0.80        # the trace's peak-to-peak fills this share of the strip height
CLIPPED_SPAN = 2.4        # ... and this in a `clipped` defect, so it runs past both edges


@dataclass
class StripTruth:
    """What the strip shows: first/last trace column and the centre per column in ecg_px (NaN in gaps)."""

    x0: int | None
    x1: int | None
    trace_y: np.ndarray      # float32, len x1 - x0 + 1, positive up, px from the strip's vertical centre


def column_signal(sig_500: np.ndarray, fs: float, duration_s: float, n_cols: int) -> np.ndarray:
    """The signal at the columns' times: column i of n shows time i / n * duration (mean over its time span)."""
    t_edges = np.arange(n_cols + 1) / n_cols * duration_s
    cum = np.concatenate([[0.0], np.cumsum(sig_500)]) / fs
    t_grid = np.arange(len(cum)) / fs
    integral = np.interp(t_edges, t_grid, cum)
    return np.diff(integral) / np.diff(t_edges)


def draw_strip(h: int, w: int, col_mv: np.ndarray | None, x0: int, rng: np.random.Generator, defect: str = "none",
               label: str = "II") -> tuple[np.ndarray, StripTruth]:
    """Render the strip (h x w x 3 uint8) with ``col_mv`` (mV per trace column) starting at column ``x0``."""
    strip = np.full((h, w, 3), STRIP_BG, np.uint8)
    cv2.putText(strip, label, (4, h // 2 - 4), cv2.FONT_HERSHEY_PLAIN, max(0.6, h / 150), (150, 150, 150), 1,
                cv2.LINE_8)
    if col_mv is None or defect == "no_trace":
        return strip, StripTruth(None, None, np.zeros(0, np.float32))
    n = len(col_mv)
    lo, hi = float(np.min(col_mv)), float(np.max(col_mv))
    span = CLIPPED_SPAN if defect == "clipped" else NORMAL_SPAN
    gain = min(0.35 * h, span * h / max(hi - lo, 1e-3)) if defect != "clipped" else span * h / max(hi - lo, 1e-3)
    centre_row = (h - 1) / 2.0
    y = centre_row - (col_mv - (hi + lo) / 2.0) * gain          # float row per column
    prev = np.concatenate([[y[0]], y[:-1]])
    nxt = np.concatenate([y[1:], [y[-1]]])
    top = np.minimum(y, np.minimum((prev + y) / 2, (nxt + y) / 2))
    bot = np.maximum(y, np.maximum((prev + y) / 2, (nxt + y) / 2))
    r0 = np.clip(np.round(top).astype(int) - TRACE_HALF, 0, h - 1)
    r1 = np.clip(np.round(bot).astype(int) + TRACE_HALF, 0, h - 1)
    visible = np.ones(n, bool)
    if defect == "gap":
        glen = int(rng.integers(20, 41))
        g0 = int(rng.integers(n // 4, max(n // 4 + 1, 3 * n // 4 - glen)))
        visible[g0:g0 + glen] = False
    rows = np.arange(h)[:, None]
    lit = (rows >= r0[None, :]) & (rows <= r1[None, :]) & visible[None, :]
    region = strip[:, x0:x0 + n]
    region[lit] = TRACE_RGB
    trace_y = np.where(visible, centre_row - (r0 + r1) / 2.0, np.nan).astype(np.float32)
    return strip, StripTruth(x0, x0 + n - 1, trace_y)
