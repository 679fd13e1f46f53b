"""ECG tracing from the first frame's strip (paper section 3.1, docs/contract.md, Ingest; docs/ingest.md, "Tracing
the ECG strip"): HSV mask with hysteresis, trace chain, plausibility and quality checks, waveform.

The strip is an RGB uint8 image. Pixels inside the paper's HSV window (OpenCV units, H 0-179) seed the trace; a
looser window grows it where it touches the seeds, so thin anti-aliased strokes stay whole. Thin full-height cursor
lines are removed with a margin (white or grey ones mark the columns they hide). Lit pixels are grouped into
connected components; the trace is the chain of large components that never overlap in x (a trace is a function of
x), everything else lit is an outlier. Then, in order: no trace, plausibility (thin, one run per column, not
scattered marks), extent, amplitude, continuity, coverage of the trace's own extent, HSV outliers. The waveform is
the coverage-weighted centre of the trace pixels per column, positive up, relative to the strip's vertical centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from eee_ray.ingest import schema as S


@dataclass
class TraceConfig:
    """Every threshold of the tracing and its checks, named, each with what it protects against; defaults are the
    paper's window and values measured on the hard cases of ``eee_ray.synth.trace_cases`` (docs/ingest.md)."""

    hsv_lower: tuple[int, int, int] = (64, 97, 113)     # paper, OpenCV HSV units
    hsv_upper: tuple[int, int, int] = (91, 255, 198)    # paper
    # Hysteresis: a looser window whose pixels count only where they touch (8-connected, through other loose pixels)
    # a pixel of the strict window. Protects thin anti-aliased strokes, whose steep flanks and edges dim below the
    # strict V/S bounds (and lose saturation to 4:2:2 chroma subsampling), against breaking into pieces, while loose
    # pixels elsewhere (speckle, text edges) stay dark.
    loose_hue_margin: int = 6            # the loose window widens the hue range by this on both sides ...
    loose_min_saturation: int = 45       # ... lowers S to this (below, dark speckle's chroma noise passes) ...
    loose_min_value: int = 50            # ... lowers V to this (below, JPEG ringing on the dark band passes) ...
    loose_value_above: int = 30          # ... and raises the V ceiling by this (bright anti-aliasing over text)
    loose_min_chroma: int = 12           # ... or, below that S, holds at least this chroma (max - min of RGB): JPEG
                                         # quantisation halves the chroma of a 1-px dark green line (S 30-45 left)
                                         # while its hue stays; grey speckle's chroma noise mostly stays below this
                                         # (at 10, tinted speckle bridges true breaks in the hard cases)
    pair_seeds: bool = True              # two loose neighbours whose summed colour is in the strict window seed too:
                                         # a dark 1-px anti-aliased stroke has no single pixel left in the window
    min_trace_columns: int = 16          # fewer traced columns than this: no_ecg_trace
    # Plausibility: what is accepted must look like a waveform drawn as a thin curve, a function of x. Protects
    # against colour Doppler, text, markers and dots in the trace's hue being taken for an ECG (-> no_ecg_trace).
    max_median_thickness_px: float = 10.0  # median stroke width across the stroke (a column's lit px over
                                           # sqrt(1 + slope^2)) above this: a blob, not a curve
    max_multi_run_fraction: float = 0.2   # more traced columns than this holding 2+ separate vertical runs: text
    multi_run_tolerance_cols: int = 1     # ... runs counted on a column and this many neighbours either side
                                          # together: chroma bled next to a steep 1-px flank is no second run
    min_fill: float = 0.6                 # traced columns / the chain's extent below this: scattered marks
    max_segments: int = 3                 # more pieces (split by gaps > max_gap_px) than this: scattered marks
    # Coverage: against the trace's own extent, plus a minimum extent; a trace in a corner of the band is normal.
    min_extent_px: int = 48              # a trace shorter than this many columns: ecg_low_coverage (too few samples)
    min_extent_fraction: float = 0.15    # ... or shorter than this share of the strip width (less than ~a beat)
    min_coverage: float = 0.9            # traced columns / (x1 - x0 + 1) below this: ecg_low_coverage (dropouts)
    edge_margin_px: int = 1              # rows at the strip's top/bottom edge that count as "touching"
    max_edge_columns: int = 2            # more traced columns touching an edge: ecg_amplitude_clipped
    max_gap_px: int = 6                  # a longer run of untraced columns inside the trace: ecg_discontinuous (real
                                         # gaps are 10+ columns; shorter ones are dropouts of thin strokes)
    max_jump_px: int = 6                 # a larger vertical break per column between traced columns: discontinuous
    continuity_min_coverage: float = 0.25  # gaps and breaks are measured on the trace pixels with at least this
                                           # estimated stroke coverage (``stroke_coverage``): speckle tinted by the
                                           # trace's bled chroma can narrow a true gap or bridge a true break with
                                           # faint pixels; a steep flank is drawn solid
    max_outlier_fraction: float = 0.05   # more lit pixels off the trace: ecg_hsv_outliers
    chain_overlap_px: int = 3            # x-overlap tolerated between two trace components
    resample_hz: float = 100.0           # rate of the `ecg` column
    # Waveform: each trace pixel counts with its estimated stroke coverage, the smaller of its chroma and its luma
    # contrast (each relative to the stroke's own). JPEG 4:2:2 halves the chroma's horizontal resolution: a steep
    # 1-px QRS flank tints the background pixels of the neighbouring columns (the same rows) with the trace's hue,
    # which pulls those columns' centres towards the flank and flattens the QRS. Luma keeps full resolution: a
    # pixel tinted only by its neighbour's chroma is no brighter (or darker) than the background around it.
    coverage_ref_percentile: float = 75.0  # the stroke's own colour: trace pixels above this chroma percentile
    coverage_bg_window_px: int = 9         # the background's luma: mean of the non-trace pixels in this window
                                           # (wider than a QRS stroke, narrower than the echo sector's brightness
                                           # changes)
    coverage_min_luma_contrast: float = 15.0  # stroke and background closer in luma than this: luma cannot tell
                                              # them apart, the chroma alone weighs the pixel
    # --trace-color auto: the saturated hue (of the few most common) whose lit pixels look most like a trace, when
    # the paper's window finds no trace
    auto_min_saturation: int = 90
    auto_min_value: int = 90
    auto_hue_halfwidth: int = 8
    auto_min_pixels: int = 40
    auto_candidates: int = 3             # hue peaks tried (Doppler colour can outnumber the trace's pixels)
    auto_prefer_ratio: float = 1.3       # the auto hue replaces an accepted paper trace only with this many more px
    # Cursor lines: a lit column run this tall and at most this wide is a moving cursor, removed before tracing.
    # Protects the trace from a vertical line taken as a QRS flank (or as the whole trace).
    cursor_min_height_fraction: float = 0.9
    cursor_max_width_px: int = 4
    cursor_margin_px: int = 2            # columns either side removed with it: JPEG 4:2:2 bleeds the cursor's chroma
                                         # into them as broken vertical dashes that reach the strip's edges
    cursor_max_lines: int = 1            # more such lines are no cursors but the trace's clipped QRS spikes (one
                                         # per beat), left for the amplitude check
    # A white or grey cursor line (never lit) hides the trace beneath: its columns are no gap, and a QRS flank it
    # covers is no vertical break.
    grey_cursor_min_value: int = 180     # a line at least this bright (V) over the cursor's height ...
    grey_cursor_max_saturation: int = 40  # ... and at most this saturated is white or grey (a trace never is)


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


def _lookup(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``keep[labels]`` (uint8 per label): a table lookup over a label image, ten times faster than numpy's
    indexing while the labels fit in a byte (the usual case: a strip holds few components)."""
    if keep.size <= 256:
        lut = np.zeros(256, np.uint8)
        lut[:keep.size] = keep
        return cv2.LUT(labels.astype(np.uint8), lut)
    return np.take(keep, labels)


def grow(strict: np.ndarray, loose: np.ndarray, strict_idx: np.ndarray | None = None) -> np.ndarray:
    """Hysteresis: the strict pixels plus every loose pixel 8-connected to one through loose pixels, so a stretch
    of a thin stroke that dimmed out of the strict window comes back whole when any of its pixels stayed inside.
    ``strict_idx``: the strict pixels' flat indices, when the caller has them (saves a pass over the strip)."""
    loose = loose | strict
    h, w = loose.shape
    ltype = cv2.CV_16U if -(-h // 2) * -(-w // 2) < 2 ** 16 else cv2.CV_32S  # as in trace_chain
    n, labels = cv2.connectedComponents(loose, connectivity=8, ltype=ltype)
    keep = np.zeros(n, np.uint8)
    keep[labels.reshape(-1)[strict_idx] if strict_idx is not None else labels[strict.view(bool)]] = 1
    keep[0] = 0
    if keep[1:].all():  # every component holds a seed: all of ``loose`` stays
        return loose
    return _lookup(labels, keep)


def _in_window(hsv: np.ndarray, h_lo: int, h_hi: int, s_lo: int, v_lo: int, v_hi: int, s_hi: int = 255) -> np.ndarray:
    """HSV window (0/1 uint8) with a hue range that may wrap around 0/180."""
    def rng(a: int, b: int) -> np.ndarray:
        return cv2.inRange(hsv, np.array((a, s_lo, v_lo), np.uint8), np.array((b, s_hi, v_hi), np.uint8))

    if h_hi - h_lo >= 179:
        out = rng(0, 179)
    elif h_lo < 0:
        out = rng(0, h_hi) | rng(h_lo + 180, 179)
    elif h_hi > 179:
        out = rng(h_lo, 179) | rng(0, h_hi - 180)
    else:
        out = rng(h_lo, h_hi)
    return out & 1


def _windows(hsv: np.ndarray, windows: list[tuple]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Several HSV windows (``_in_window`` arguments) at once: the flat indices of the pixels inside the smallest
    window that holds them all, and per window a 0/1 flag for each of those pixels. The lit pixels are a few
    percent of a strip, so one pass over the strip replaces one per window."""
    union = (min(w[0] for w in windows), max(w[1] for w in windows), min(w[2] for w in windows),
             min(w[3] for w in windows), max(w[4] for w in windows), max(w[5] if len(w) > 5 else 255 for w in windows))
    idx = np.flatnonzero(_in_window(hsv, *union).view(bool))  # numpy finds a bool array's nonzeros far faster
    if idx.size == 0:
        return idx, [np.zeros(0, np.uint8) for _ in windows]
    px = np.take(hsv.reshape(-1, 3), idx, axis=0)[:, None]  # (N, 1, 3): OpenCV's colour ops are per pixel, so the
    # flags are exact (np.take: several times faster than indexing for rows)
    return idx, [_in_window(px, *w).reshape(-1) for w in windows]


def pair_sums(strip_rgb: np.ndarray, idx: np.ndarray | None = None) -> list[np.ndarray]:
    """HSV of each pixel plus its lower and its right neighbour (saturating): where an anti-aliased 1-px stroke
    splits its colour over two pixels, their sum shows the colour it was drawn in. With ``idx`` (flat pixel
    indices) only those pixels' sums, as (N, 1, 3); the last row's (column's) pairs are black, as on the strip."""
    h, w = strip_rgb.shape[:2]
    if idx is None:
        out = []
        for a, b in ((strip_rgb[:-1], strip_rgb[1:]), (strip_rgb[:, :-1], strip_rgb[:, 1:])):
            pair = np.zeros_like(strip_rgb)
            s = cv2.add(a, b)  # saturating uint8 sum
            pair[:s.shape[0], :s.shape[1]] = s
            out.append(cv2.cvtColor(pair, cv2.COLOR_RGB2HSV))
        return out
    flat = strip_rgb.reshape(-1, 3)
    out = []
    for valid, step in ((idx < (h - 1) * w, w), (idx % w < w - 1, 1)):
        nb = np.take(flat, np.where(valid, idx + step, idx), axis=0)
        s = cv2.add(np.take(flat, idx, axis=0)[:, None], nb[:, None])  # saturating uint8 sum
        s[~valid] = 0
        out.append(cv2.cvtColor(s, cv2.COLOR_RGB2HSV))
    return out


def paper_mask(hsv: np.ndarray, cfg: TraceConfig, strip_rgb: np.ndarray | None = None) -> np.ndarray:
    """The paper's window, grown by hysteresis into the looser one. With ``strip_rgb`` the strict seeds include
    the pixel pairs whose summed colour lies in the window (both pixels of the pair), for 1-px strokes. Computed on
    the pixels of the widest window only (identical to whole-strip masks, at a fraction of the cost)."""
    lo, hi = cfg.hsv_lower, cfg.hsv_upper
    h, w = hsv.shape[:2]
    strict_w = (lo[0], hi[0], lo[1], lo[2], hi[2], hi[1])
    loose_w = (lo[0] - cfg.loose_hue_margin, hi[0] + cfg.loose_hue_margin, min(lo[1], cfg.loose_min_saturation),
               min(lo[2], cfg.loose_min_value), min(255, hi[2] + cfg.loose_value_above))
    faint_w = (lo[0] - cfg.loose_hue_margin, hi[0] + cfg.loose_hue_margin, 1, min(lo[2], cfg.loose_min_value),
               min(255, hi[2] + cfg.loose_value_above))
    chroma = cfg.loose_min_chroma > 0
    idx, flags = _windows(hsv, [strict_w, loose_w] + ([faint_w] if chroma else []))
    strict_f, loose_f = flags[0].view(bool), flags[1].view(bool)
    if chroma:
        sv = np.take(hsv.reshape(-1, 3), idx, axis=0)
        chroma_ok = sv[:, 1].astype(np.uint16) * sv[:, 2] >= cfg.loose_min_chroma * 255
        loose_f = loose_f | (flags[2].view(bool) & chroma_ok)
    loose = np.zeros(h * w, np.uint8)
    loose_idx = idx[loose_f]
    loose[loose_idx] = 1
    strict_idx = idx[strict_f]
    if strip_rgb is not None and cfg.pair_seeds and loose_idx.size:
        # a pair seeds where its first pixel is loose (the pair's sum in the strict window); both its pixels count
        # when loose
        marks = [strict_idx]
        for ph, step, valid in zip(pair_sums(strip_rgb, loose_idx), (w, 1),
                                   (loose_idx < (h - 1) * w, loose_idx % w < w - 1)):
            seed = _in_window(ph, *strict_w).reshape(-1).view(bool)
            first = loose_idx[seed]
            second = first[valid[seed]] + step
            marks += [first, second[loose[second].view(bool)]]
        strict_idx = np.concatenate(marks)  # repeats are harmless
    strict = np.zeros(h * w, np.uint8)
    strict[strict_idx] = 1
    return grow(strict.reshape(h, w), loose.reshape(h, w), strict_idx)


def hue_mask(hsv: np.ndarray, hue: int, cfg: TraceConfig) -> np.ndarray:
    """Auto mode's window around ``hue``, grown by hysteresis like the paper's."""
    hw = cfg.auto_hue_halfwidth
    h, w = hsv.shape[:2]
    idx, (strict_f, loose_f) = _windows(hsv, [
        (hue - hw, hue + hw, cfg.auto_min_saturation, cfg.auto_min_value, 255),
        (hue - hw - cfg.loose_hue_margin, hue + hw + cfg.loose_hue_margin,
         min(cfg.auto_min_saturation, cfg.loose_min_saturation), min(cfg.auto_min_value, cfg.loose_min_value), 255)])
    strict, loose = np.zeros(h * w, np.uint8), np.zeros(h * w, np.uint8)
    strict_idx = idx[strict_f.view(bool)]
    strict[strict_idx] = 1
    loose[idx[loose_f.view(bool)]] = 1
    return grow(strict.reshape(h, w), loose.reshape(h, w), strict_idx)


def hue_peaks(hsv: np.ndarray, cfg: TraceConfig) -> list[int]:
    """The most common saturated, bright hues (at most ``auto_candidates``, at least a window apart)."""
    sat = (hsv[..., 1] >= cfg.auto_min_saturation) & (hsv[..., 2] >= cfg.auto_min_value)
    if sat.sum() < cfg.auto_min_pixels:
        return []
    hw = cfg.auto_hue_halfwidth
    hist = np.bincount(hsv[..., 0][sat].astype(np.int64), minlength=180).astype(np.float64)
    circ = np.concatenate([hist[-hw:], hist, hist[:hw]])
    window = np.convolve(circ, np.ones(2 * hw + 1), mode="valid")
    peaks = []
    for _ in range(cfg.auto_candidates):
        hue = int(np.argmax(window))
        if window[hue] < cfg.auto_min_pixels:
            break
        peaks.append(hue)
        for d in range(-2 * hw, 2 * hw + 1):
            window[(hue + d) % 180] = 0
    return peaks


def auto_mask(strip_rgb: np.ndarray, cfg: TraceConfig) -> tuple[np.ndarray, int]:
    """Mask of the saturated hue whose lit pixels look most like a trace (scanners draw green, teal, cyan,
    yellow...; Doppler colour or markers may hold more pixels than the trace)."""
    hsv = cv2.cvtColor(strip_rgb, cv2.COLOR_RGB2HSV)
    best, best_hue, best_score = np.zeros(hsv.shape[:2], np.uint8), -1, -1.0
    for hue in hue_peaks(hsv, cfg):
        mask = hue_mask(hsv, hue, cfg)
        scored = mask.copy()  # check_trace removes the cursor from ``mask`` itself and skips its columns' gap
        scored[:, cursor_columns(mask, cfg)] = 0
        trace = trace_chain(scored, cfg)
        cols = trace.any(axis=0)
        n = int(cols.sum())
        score = float(n) if n and plausibility(trace, cols)[0] <= cfg.max_median_thickness_px else 0.0
        if score > best_score:
            best, best_hue, best_score = mask, hue, score
    return best, best_hue


def plausibility(trace: np.ndarray, traced: np.ndarray, run_tolerance_cols: int = 1) -> tuple[float, float]:
    """(median stroke thickness per traced column, share of traced columns holding 2+ vertical runs more than two
    pixels apart, counted on each column together with its ``run_tolerance_cols`` neighbours either side: a
    continuous curve covers one interval of rows there, however steep, while the chroma a steep 1-px flank bleeds
    into the next column (JPEG 4:2:2) adds a second run to that column alone). The thickness is the column's lit
    pixels over sqrt(1 + slope^2), the slope being the trace's vertical travel to its neighbours: the width across
    the stroke, so a steep QRS flank drawn with a thick pen counts as thin as it is drawn, and a blob (Doppler
    colour) as thick as it is."""
    cols = np.flatnonzero(traced)
    if cols.size == 0:
        return 0.0, 0.0
    # on the traced columns' span, then the traced columns picked out: per-column sums and vertical morphology
    # are column by column, the span's untraced columns are empty (the same values as on the picked columns alone)
    a, b = int(cols[0]), int(cols[-1]) + 1
    span = trace[:, a:b]
    pick = traced[a:b]
    f = span.astype(np.float32)
    n = f.sum(axis=0)[pick]
    centre = (np.arange(span.shape[0], dtype=np.float32) @ f)[pick] / np.maximum(n, 1)  # integer sums: exact
    step = np.abs(np.diff(centre))
    travel = np.maximum(np.concatenate([[0.0], step]), np.concatenate([step, [0.0]]))
    thick = float(np.median(n / np.sqrt(1.0 + travel ** 2)))  # across the stroke, not down the column
    k = 2 * run_tolerance_cols + 1
    wide = cv2.dilate(span, np.ones((1, k), np.uint8)) if k > 1 else span  # outside the span: untraced, empty
    closed = cv2.morphologyEx(wide, cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8))  # 1-2 px holes split no run
    starts = ((closed[1:] > closed[:-1]).sum(axis=0) + closed[0])[pick]
    return thick, float((starts > 1).mean())


def cursor_columns(mask: np.ndarray, cfg: TraceConfig) -> np.ndarray:
    """Boolean per column: part of a thin, nearly full-height vertical line (a moving cursor) or its margin. More
    such lines than ``cursor_max_lines`` are the trace's own clipped QRS spikes (one per beat), not cursors."""
    lit = cv2.reduce(mask, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).reshape(-1)  # per column (0/1 masks)
    tall = lit >= cfg.cursor_min_height_fraction * mask.shape[0]
    out = np.zeros_like(tall)
    edges = np.diff(np.concatenate(([0], tall.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # runs of tall columns [start, end)
    thin = (ends - starts) <= cfg.cursor_max_width_px
    if not thin.any() or thin.sum() > cfg.cursor_max_lines:
        return out
    for x, end in zip(starts[thin], ends[thin]):
        out[max(x - cfg.cursor_margin_px, 0):end + cfg.cursor_margin_px] = True
    return out


def grey_cursor_columns(hsv: np.ndarray, cfg: TraceConfig) -> np.ndarray:
    """Boolean per column: a thin, nearly full-height bright grey or white line (a cursor outside the trace's
    colour) or its margin. It hides the trace beneath; it is never lit, so only its columns need marking."""
    grey = cv2.inRange(hsv, np.array((0, 0, cfg.grey_cursor_min_value), np.uint8),
                       np.array((179, cfg.grey_cursor_max_saturation, 255), np.uint8)) & 1
    return cursor_columns(grey, cfg)


def trace_chain(mask: np.ndarray, cfg: TraceConfig) -> np.ndarray:
    """The trace's pixels: components taken largest first while their x-extents do not overlap."""
    joined = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    h, w = joined.shape
    # 16-bit labels are about 3x faster; they suffice while even a checkerboard of dots cannot overflow them
    ltype = cv2.CV_16U if -(-h // 2) * -(-w // 2) < 2 ** 16 else cv2.CV_32S
    n, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8, ltype=ltype)
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable") + 1  # largest first, ties in label order
    lefts, widths = stats[:, cv2.CC_STAT_LEFT].tolist(), stats[:, cv2.CC_STAT_WIDTH].tolist()
    taken: list[tuple[int, int]] = []
    keep = np.zeros(n, np.uint8)
    for c in order.tolist():
        a = lefts[c]
        b = a + widths[c] - 1
        if all(min(b, d) - max(a, c0) + 1 <= cfg.chain_overlap_px for c0, d in taken):
            taken.append((a, b))
            keep[c] = 1
    if keep[1:].all():  # every component kept: every lit pixel is the trace's (the mask itself, never changed after)
        return mask
    return _lookup(labels, keep) & mask  # only the originally lit pixels of kept components


def _runs(flags: np.ndarray) -> int:
    """Length of the longest run of True."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max(initial=0))


def _segments(untraced: np.ndarray, max_gap: int) -> int:
    """Pieces of the trace between gaps longer than ``max_gap`` columns."""
    edges = np.diff(np.concatenate(([0], untraced.astype(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return 1 + int((lengths > max_gap).sum())


def _max_jump(trace: np.ndarray, cols: np.ndarray, hidden: np.ndarray | None = None) -> int:
    """Largest vertical break between consecutive traced columns, per column of distance (small gaps included).
    Pairs with a ``hidden`` column (a cursor line) between them are skipped: what the cursor covers is unknown."""
    if cols.size < 2:
        return 0
    h = trace.shape[0]
    # first and last lit row of every column in cols (each holds at least one lit pixel), from the span of cols:
    # the largest (h - row) and (row + 1) over a column's lit pixels
    span = trace[:, cols[0]:cols[-1] + 1]
    dtype = np.uint8 if h <= 255 else np.int32
    top_w = np.arange(h, 0, -1, dtype=dtype)[:, None]
    top = h - (span * top_w).max(axis=0)[cols - cols[0]].astype(np.int64)
    bot = (span * (top_w[::-1])).max(axis=0)[cols - cols[0]].astype(np.int64) - 1
    gap = (np.maximum(top[1:] - bot[:-1], top[:-1] - bot[1:]) - 1) / np.maximum(np.diff(cols), 1)
    if hidden is not None:
        n_hidden = np.concatenate([[0], np.cumsum(hidden)])
        gap = gap[n_hidden[cols[1:]] - n_hidden[cols[:-1] + 1] == 0]
    return int(np.ceil(max(gap.max(initial=0), 0)))


def trace_ecg(strip_rgb: np.ndarray, cfg: TraceConfig, trace_color: str = "paper") -> TraceResult:
    """Trace the ECG in ``strip_rgb`` (H, W, 3) RGB uint8 and run the checks (docs/ingest.md, "Tracing").

    ``auto``: the paper's window and the saturated hue that looks most like a trace; an accepted trace beats a
    rejected one, and of two accepted ones the auto hue wins only with clearly more trace pixels (a cyan trace's
    dimmed edges fall inside the paper's window; its full stroke does not). When both are rejected, the verdict
    of the window that traced more pixels stands (the paper's on a tie): cyan text or markers show only their
    dimmed edges in the paper's window, where they can pass for a broken curve."""
    hsv = cv2.cvtColor(strip_rgb, cv2.COLOR_RGB2HSV)
    hidden = grey_cursor_columns(hsv, cfg)
    paper = check_trace(paper_mask(hsv, cfg, strip_rgb), cfg, "paper", strip_rgb, hidden)
    if trace_color != "auto":
        return paper
    mask, hue = auto_mask(strip_rgb, cfg)
    auto = check_trace(mask, cfg, f"auto(h={hue})", strip_rgb, hidden)
    if paper.reason is None and auto.reason is None:
        more = auto.quality["trace_pixels"] > cfg.auto_prefer_ratio * paper.quality["trace_pixels"]
        return auto if more else paper
    if paper.reason is None:
        return paper
    if auto.reason is None or paper.x0 < 0:
        return auto
    if auto.x0 >= 0 and auto.quality["trace_pixels"] > paper.quality["trace_pixels"]:
        return auto
    return paper


def check_trace(mask: np.ndarray, cfg: TraceConfig, mode: str, strip_rgb: np.ndarray | None = None,
                hidden: np.ndarray | None = None) -> TraceResult:
    """Cursor lines out, the trace chain, then the checks in order; the waveform of whatever was traced.
    ``hidden``: columns covered by a line that is not lit (``grey_cursor_columns``), skipped like a cursor's."""
    h, w = mask.shape
    cursor = cursor_columns(mask, cfg)
    mask[:, cursor] = 0
    if hidden is not None:
        cursor = cursor | hidden
    trace = trace_chain(mask, cfg)
    traced = trace.view(bool).any(axis=0)
    n_cols = int(traced.sum())
    if n_cols < cfg.min_trace_columns:
        return TraceResult(S.NO_ECG_TRACE, f"{n_cols} traced columns in the strip (< {cfg.min_trace_columns}) "
                                           f"with the {mode} colour window", mask, mode)
    cols = np.flatnonzero(traced)
    x0, x1 = int(cols[0]), int(cols[-1])
    extent = x1 - x0 + 1
    lit = cv2.countNonZero(mask)  # 0/1 masks
    n_trace = cv2.countNonZero(trace)
    m = cfg.edge_margin_px
    edge_cols = int((trace[:m].any(axis=0) | trace[h - m:].any(axis=0)).sum()) if m > 0 else 0
    inside = ~traced[x0:x1 + 1] & ~cursor[x0:x1 + 1]
    thick, multi = plausibility(trace, traced, cfg.multi_run_tolerance_cols)
    weight = None if strip_rgb is None else stroke_coverage(strip_rgb, trace, x0, x1, cfg)
    solid = trace  # continuity (gaps, breaks) is judged on the pixels the stroke clearly covers
    if weight is not None and cfg.continuity_min_coverage > 0:
        solid = np.zeros_like(trace)
        solid[:, x0:x1 + 1] = trace[:, x0:x1 + 1] & (weight >= cfg.continuity_min_coverage)
    solid_traced = solid.view(bool).any(axis=0)
    solid_cols = np.flatnonzero(solid_traced)
    solid_gaps = ~solid_traced[x0:x1 + 1] & ~cursor[x0:x1 + 1]
    quality = {
        "trace_mode": mode,
        "coverage": n_cols / max(extent - int(cursor[x0:x1 + 1].sum()), 1),
        "extent_fraction": extent / w,
        "edge_columns": edge_cols,
        "max_gap_px": _runs(solid_gaps),
        "max_jump_px": _max_jump(solid, solid_cols, cursor),
        "outlier_fraction": (lit - n_trace) / max(lit, 1),
        "median_thickness_px": thick,
        "multi_run_fraction": multi,
        "trace_pixels": n_trace,
        "segments": _segments(inside, cfg.max_gap_px),
    }
    res = TraceResult(None, "accepted", mask, mode, x0, x1, quality=quality)
    min_extent = max(cfg.min_extent_px, int(np.ceil(cfg.min_extent_fraction * w)))
    if thick > cfg.max_median_thickness_px:
        res.reason, res.detail = S.NO_ECG_TRACE, (
            f"the lit pixels form a blob, not a thin curve: median {thick:.1f} px per column "
            f"(> {cfg.max_median_thickness_px}) with the {mode} colour window")
    elif multi > cfg.max_multi_run_fraction:
        res.reason, res.detail = S.NO_ECG_TRACE, (
            f"the lit pixels are not a function of x (text, markers): {multi:.0%} of the columns hold several "
            f"runs (> {cfg.max_multi_run_fraction:.0%}) with the {mode} colour window")
    elif n_cols / extent < cfg.min_fill:
        res.reason, res.detail = S.NO_ECG_TRACE, (
            f"the lit pixels are scattered marks, not a curve: {n_cols} of {extent} columns (< {cfg.min_fill}) "
            f"with the {mode} colour window")
    elif quality["segments"] > cfg.max_segments:
        res.reason, res.detail = S.NO_ECG_TRACE, (
            f"the lit pixels are scattered marks, not a curve: {quality['segments']} pieces (> {cfg.max_segments}) "
            f"with the {mode} colour window")
    elif extent < min_extent:
        res.reason, res.detail = S.ECG_LOW_COVERAGE, (
            f"trace spans {extent} columns ({extent / w:.2f} of the strip width), less than {min_extent}")
    elif edge_cols > cfg.max_edge_columns:
        res.reason, res.detail = S.ECG_AMPLITUDE_CLIPPED, (
            f"trace touches the strip's top/bottom edge in {edge_cols} columns (> {cfg.max_edge_columns})")
    elif quality["max_gap_px"] > cfg.max_gap_px:
        res.reason, res.detail = S.ECG_DISCONTINUOUS, (
            f"gap of {quality['max_gap_px']} columns in the trace (> {cfg.max_gap_px})")
    elif quality["max_jump_px"] > cfg.max_jump_px:
        res.reason, res.detail = S.ECG_DISCONTINUOUS, (
            f"vertical break of {quality['max_jump_px']} px in the trace (> {cfg.max_jump_px})")
    elif quality["coverage"] < cfg.min_coverage:
        res.reason, res.detail = S.ECG_LOW_COVERAGE, (
            f"trace covers {quality['coverage']:.2f} of its own extent (< {cfg.min_coverage})")
    elif quality["outlier_fraction"] > cfg.max_outlier_fraction:
        res.reason, res.detail = S.ECG_HSV_OUTLIERS, (
            f"{quality['outlier_fraction']:.1%} of the lit pixels lie off the trace (> {cfg.max_outlier_fraction:.0%})")
    res.ecg_px = column_waveform(trace, x0, x1, weight)
    return res


def stroke_coverage(strip_rgb: np.ndarray, trace: np.ndarray, x0: int, x1: int, cfg: TraceConfig) -> np.ndarray:
    """Estimated stroke coverage (0..1) of each pixel in columns [x0, x1]: min(chroma / the stroke's chroma,
    (luma - local background luma) / (the stroke's luma - local background luma)). A pixel of an anti-aliased
    stroke over a grey background gets its coverage from both; a background pixel tinted by the chroma of the
    stroke next to it (JPEG 4:2:2) gets the small luma one."""
    out = np.zeros((trace.shape[0], x1 + 1 - x0), np.float32)
    rows = np.flatnonzero(trace[:, x0:x1 + 1].view(bool).any(axis=1))
    if rows.size == 0:
        return out
    # the rows of the trace and a window beyond: the other rows hold no trace pixel, and no window of one reaches
    # past them (the strip's own top and bottom rows stay the edges where the window is reflected)
    reach = cfg.coverage_bg_window_px
    ya, yb = max(int(rows[0]) - reach, 0), min(int(rows[-1]) + reach + 1, trace.shape[0])
    rgb = np.ascontiguousarray(strip_rgb[ya:yb, x0:x1 + 1])
    on = np.ascontiguousarray(trace[ya:yb, x0:x1 + 1])
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # Y = 0.299 R + 0.587 G + 0.114 B
    off = 1 - on
    k = (cfg.coverage_bg_window_px, cfg.coverage_bg_window_px)
    # the non-trace pixels' luma and their count per window (16-bit sums: 255 * k^2 fits for k <= 16)
    depth = cv2.CV_16U if cfg.coverage_bg_window_px <= 16 else cv2.CV_32F
    bg_sum = cv2.boxFilter(luma * off, depth, k, normalize=False)
    bg_n = cv2.boxFilter(off, depth, k, normalize=False)
    idx = np.flatnonzero(on.view(bool))              # only the trace pixels need a weight
    px = np.take(rgb.reshape(-1, 3), idx, axis=0)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]  # per channel: a reduction over a length-3 axis is slow
    chroma = (np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).astype(np.float32)
    y_px = luma.reshape(-1)[idx].astype(np.float32)
    ref = chroma >= np.percentile(chroma, cfg.coverage_ref_percentile)
    c_ref, y_ref = max(float(np.median(chroma[ref])), 1.0), float(np.median(y_px[ref]))
    a_chroma = np.minimum(chroma / c_ref, 1.0)
    bg = bg_sum.reshape(-1)[idx].astype(np.float32) / np.maximum(bg_n.reshape(-1)[idx], 1)
    contrast = y_ref - bg
    usable = np.abs(contrast) >= cfg.coverage_min_luma_contrast
    a_luma = np.where(usable, (y_px - bg) / np.where(usable, contrast, 1.0), a_chroma)
    # + 1e-3: never all-zero in a traced column
    out[ya:yb].reshape(-1)[idx] = np.minimum(a_chroma, np.clip(a_luma, 0.0, 1.0)) + 1e-3
    return out


def column_waveform(trace: np.ndarray, x0: int, x1: int, weight: np.ndarray | None = None) -> np.ndarray:
    """Centre row of the trace pixels per column in [x0, x1], positive up from the strip's centre; gaps interpolated.

    With ``weight`` (per pixel of columns [x0, x1], ``stroke_coverage``) the centre weighs each trace pixel by how
    much of the anti-aliased stroke covers it: a one-column QRS spike then peaks where it was drawn."""
    h = trace.shape[0]
    sub = trace[:, x0:x1 + 1]
    wgt = sub.astype(np.float32)
    if weight is not None:
        wgt *= weight
    n = wgt.sum(axis=0)
    rows = np.arange(h, dtype=np.float32) @ wgt
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
