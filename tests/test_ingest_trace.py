"""ECG tracing on strips drawn with OpenCV, where the drawn trace is the ground truth: fidelity, each check's reason,
and the --trace-color auto mode (other hue, moving cursor line)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from eee_ray.ingest import TraceConfig
from eee_ray.ingest import schema as S
from eee_ray.ingest.trace import resample, trace_ecg

H, W = 144, 640
PAPER_GREEN = (0, 165, 94)     # RGB, HSV (77, 255, 165): inside the paper's window
YELLOW = (230, 220, 0)         # HSV hue 28: outside the paper's window


def ecg_like(n: int, amp: float, seed: int = 0) -> np.ndarray:
    """A rough ECG: baseline wander plus narrow QRS-like spikes and broader T waves."""
    x = np.arange(n)
    rng = np.random.default_rng(seed)
    y = 0.1 * np.sin(x / 40.0)
    for beat in range(40, n, 110 + int(rng.integers(0, 10))):
        y += np.exp(-0.5 * ((x - beat) / 2.5) ** 2) - 0.25 * np.exp(-0.5 * ((x - beat - 6) / 2.0) ** 2)
        y += 0.3 * np.exp(-0.5 * ((x - beat - 40) / 9.0) ** 2)
    return amp * y / np.abs(y).max()


def draw(ys: np.ndarray, x0: int = 20, colour=PAPER_GREEN, thickness: int = 2) -> np.ndarray:
    """A dark strip with the waveform ``ys`` (positive up, px from the centre) drawn from column x0."""
    strip = np.full((H, W, 3), 8, np.uint8)
    rows = (H - 1) / 2.0 - ys
    pts = np.stack([np.arange(x0, x0 + ys.size), rows], axis=1).round().astype(np.int32)
    cv2.polylines(strip, [pts.reshape(-1, 1, 2)], False, colour, thickness, cv2.LINE_8)
    return strip


def on_columns(res, x0: int, n: int) -> np.ndarray:
    """The traced waveform on the drawn columns x0 .. x0+n-1 (a thick pen spills one column either side)."""
    return res.ecg_px[x0 - res.x0: x0 - res.x0 + n]


def test_clean_trace_follows_the_drawn_waveform():
    ys = ecg_like(600, 50)
    res = trace_ecg(draw(ys), TraceConfig())
    assert res.reason is None, res.detail
    assert abs(res.x0 - 20) <= 1 and abs(res.x1 - 619) <= 1
    assert np.corrcoef(on_columns(res, 20, 600), ys)[0, 1] >= 0.98
    assert np.median(np.abs(on_columns(res, 20, 600) - ys)) <= 1.5  # pixels, positive up, centred as drawn
    ecg = resample(on_columns(res, 20, 600), duration_s=3.2, hz=100.0)
    assert ecg.dtype == np.float32 and ecg.size == 320
    assert np.corrcoef(ecg, np.interp(np.linspace(0, 599, 320), np.arange(600), ys))[0, 1] >= 0.98


def test_blank_strip_has_no_trace():
    assert trace_ecg(np.full((H, W, 3), 8, np.uint8), TraceConfig()).reason == S.NO_ECG_TRACE


def test_amplitude_beyond_the_strip_is_clipped():
    ys = np.clip(ecg_like(600, 120), -(H - 1) / 2, (H - 1) / 2)
    assert trace_ecg(draw(ys), TraceConfig()).reason == S.ECG_AMPLITUDE_CLIPPED


def test_gap_and_vertical_break_are_discontinuities():
    ys = ecg_like(600, 40)
    gapped = draw(ys)
    gapped[:, 300:330] = 8
    res = trace_ecg(gapped, TraceConfig())
    assert res.reason == S.ECG_DISCONTINUOUS and "gap" in res.detail
    broken = draw(ys[:300])
    broken = np.maximum(broken, draw(ys[300:] + 30, x0=323))
    res = trace_ecg(broken, TraceConfig())
    assert res.reason == S.ECG_DISCONTINUOUS and "break" in res.detail


def test_text_in_the_trace_colour_is_an_hsv_outlier():
    strip = draw(ecg_like(600, 25))
    cv2.putText(strip, "HR 72 bpm  II", (200, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.9, PAPER_GREEN, 2)
    res = trace_ecg(strip, TraceConfig())
    assert res.reason == S.ECG_HSV_OUTLIERS
    assert res.quality["outlier_fraction"] > TraceConfig().max_outlier_fraction


def test_partial_width_trace_is_judged_against_its_own_extent():
    """A trace over a quarter of the strip is normal (real scanners); one shorter than the minimum extent, or with
    many small dropouts, has low coverage."""
    res = trace_ecg(draw(ecg_like(150, 40), x0=200), TraceConfig())
    assert res.reason is None, res.detail
    assert trace_ecg(draw(ecg_like(60, 40), x0=200), TraceConfig()).reason == S.ECG_LOW_COVERAGE
    holes = draw(ecg_like(600, 40))
    for x in range(40, 600, 12):  # 3-column dropouts every 12 columns: each bridged, together 25 % missing
        holes[:, x:x + 3] = 8
    res = trace_ecg(holes, TraceConfig())
    assert res.reason == S.ECG_LOW_COVERAGE and "own extent" in res.detail


def test_thresholds_are_configurable():
    strip = draw(ecg_like(60, 40), x0=200)
    assert trace_ecg(strip, TraceConfig(min_extent_fraction=0.05, min_extent_px=40)).reason is None


@pytest.mark.parametrize("with_cursor", [False, True])
def test_auto_colour_finds_another_hue_and_ignores_a_cursor(with_cursor):
    ys = ecg_like(600, 45, seed=3)
    strip = draw(ys, colour=YELLOW)
    if with_cursor:
        strip[:, 400:402] = YELLOW  # a moving cursor line crossing the whole strip
    assert trace_ecg(strip, TraceConfig(), "paper").reason == S.NO_ECG_TRACE
    res = trace_ecg(strip, TraceConfig(), "auto")
    assert res.reason is None, res.detail
    assert res.trace_mode.startswith("auto")
    assert np.corrcoef(on_columns(res, 20, 600), ys)[0, 1] >= 0.98


def test_auto_mode_keeps_the_paper_window_when_it_works():
    res = trace_ecg(draw(ecg_like(600, 40)), TraceConfig(), "auto")
    assert res.reason is None and res.trace_mode == "paper"
