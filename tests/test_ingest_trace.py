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


# --- hard cases (eee_ray.synth.trace_cases): scanners' strips the default data set does not draw -----------------
# Seeds 0-4 of each case, physiology-model ECG (no shared data needed). Bounds from the spread over 8 windows of 5
# seeds (seeds 0-39, same code): per case the worst window's accepted count, and its median r, min r and share of
# accepted cines with the R-peak count recovered, floored to 0.01 (0.1 for the share). The spread per case is in
# the comment; a change that costs a case or ~0.01 of r in the worst window fails.
HARD_SEEDS = range(5)
HARD_BOUNDS = {      # case: (accepted of 5, median r, min r, R-peak share)    accepted per window over seeds 0-39
    "easy": (5, 0.99, 0.98, 1.0),            # 5 5 5 5 5 5 5 5
    "thin_aa": (4, 0.99, 0.98, 0.8),         # 5 5 5 5 5 5 5 4
    "thin_2px": (5, 0.99, 0.99, 1.0),        # 5 5 5 5 5 5 5 5
    "dark_green": (4, 0.99, 0.99, 0.7),      # 5 4 5 5 4 4 5 5
    "light_green": (5, 0.99, 0.98, 1.0),     # 5 5 5 5 5 5 5 5
    "partial_left": (5, 0.99, 0.99, 1.0),    # 5 5 5 5 5 5 5 5
    "partial_right": (4, 0.99, 0.99, 0.8),   # 5 5 5 5 4 5 5 5
    "cursor": (5, 0.99, 0.91, 0.6),          # 5 5 5 5 5 5 5 5 (min r 0.916: seed 8, a cursor hides a QRS)
    "sector_in_band": (4, 0.99, 0.98, 0.6),  # 5 5 5 5 5 5 5 4
    "text_rows": (5, 0.99, 0.93, 0.8),       # 5 5 5 5 5 5 5 5 (min r 0.934: seed 10, a cursor hides a QRS)
    "auto_cyan": (5, 0.99, 0.99, 0.8),       # 5 5 5 5 5 5 5 5
    "auto_yellow": (5, 0.99, 0.99, 0.8),     # 5 5 5 5 5 5 5 5
    "acuson_like": (5, 0.98, 0.97, 0.8),     # 5 5 5 5 5 5 5 5
    "palette_rle": (5, 0.99, 0.99, 0.8),     # 5 5 5 5 5 5 5 5
}
DEFECT_BOUNDS = {    # case: rejected with the right reason, of 5               per window over seeds 0-39
    "gap": 5,                   # 5 5 5 5 5 5 5 5
    "break": 5,                 # 5 5 5 5 5 5 5 5
    "clipped": 4,               # 5 4 5 5 5 5 5 5
    "no_trace": 5,              # 5 5 5 5 5 5 5 5
    "short": 5,                 # 5 5 5 5 5 5 5 5
    "text_in_trace_colour": 4,  # 5 5 5 4 4 4 4 4
    "doppler_in_band": 5,       # 5 5 5 5 5 5 5 5
    "markers_only": 5,          # 5 5 5 5 5 5 5 5
}
NO_TRACE_DRAWN = ("no_trace", "doppler_in_band", "markers_only")   # never accepted in 40 seeds


def _fidelity(case, res) -> float:
    a, b = max(res.x0, case.x0), min(res.x1, case.x1)
    t = case.trace_y[a - case.x0:b - case.x0 + 1]
    e = res.ecg_px[a - res.x0:b - res.x0 + 1]
    ok = np.isfinite(t)
    return float(np.corrcoef(t[ok], e[ok])[0, 1])


def test_hard_clean_cases_are_accepted_and_traced_faithfully():
    from eee_ray.synth.trace_cases import CLEAN, r_peak_count, render_case

    failures = []
    for kind in CLEAN:
        accepted, rs, peaks = 0, [], 0
        for seed in HARD_SEEDS:
            case = render_case(kind, seed)
            res = trace_ecg(case.strip.copy(), TraceConfig(), case.trace_color)
            if res.reason is None:
                accepted += 1
                rs.append(_fidelity(case, res))
                peaks += r_peak_count(res.ecg_px, (case.x1 - case.x0 + 1) / case.seconds) == case.r_peaks
        n_ok, r_med, r_min, pk = HARD_BOUNDS[kind]
        got = (accepted, np.median(rs) if rs else 0.0, min(rs, default=0.0), peaks / max(len(rs), 1))
        if got[0] < n_ok or got[1] < r_med or got[2] < r_min or got[3] < pk:
            failures.append(f"{kind}: accepted {got[0]}/5 (>= {n_ok}), median r {got[1]:.4f} (>= {r_med}), "
                            f"min r {got[2]:.4f} (>= {r_min}), R peaks {got[3]:.2f} (>= {pk})")
    assert not failures, "\n".join(failures)


def test_hard_defect_cases_are_rejected_with_the_right_reason():
    from eee_ray.synth.trace_cases import DEFECTS, render_case

    failures = []
    for kind in DEFECTS:
        verdicts = []
        for seed in HARD_SEEDS:
            case = render_case(kind, seed)
            res = trace_ecg(case.strip.copy(), TraceConfig(), case.trace_color)
            if kind in NO_TRACE_DRAWN:
                assert res.reason is not None, f"{kind} seed {seed}: a false trace was accepted"
            verdicts.append(res.reason in case.expected)
        if sum(verdicts) < DEFECT_BOUNDS[kind]:
            failures.append(f"{kind}: {sum(verdicts)}/5 with the right reason (>= {DEFECT_BOUNDS[kind]})")
    assert not failures, "\n".join(failures)


def test_thin_stroke_dropouts_are_bridged_but_real_gaps_are_not():
    """A 1-px anti-aliased stroke whose dim stretches fall out of the paper's window is traced whole (hysteresis);
    a 10-column gap in the same stroke is a discontinuity."""
    from eee_ray.synth.trace_cases import render_case

    case = render_case("thin_aa", 2)
    res = trace_ecg(case.strip.copy(), TraceConfig())
    assert res.reason is None, res.detail
    strip = case.strip.copy()
    mid = (case.x0 + case.x1) // 2
    strip[:, mid:mid + 10] = 6
    res = trace_ecg(strip, TraceConfig())
    assert res.reason == S.ECG_DISCONTINUOUS and "gap of 10" in res.detail


def test_doppler_text_and_markers_are_never_a_trace():
    """Colour in the trace's hue that is not a thin curve (a Doppler blob, a text row, markers) is no_ecg_trace."""
    strip = np.full((H, W, 3), 8, np.uint8)
    cv2.ellipse(strip, (320, 70), (90, 40), 0, 0, 360, PAPER_GREEN, -1)
    assert "blob" in trace_ecg(strip, TraceConfig()).detail
    strip = np.full((H, W, 3), 8, np.uint8)
    for row in range(3):
        cv2.putText(strip, "HR 72 bpm  25 mm/s  II  1.0 mV", (20, 40 + 40 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    PAPER_GREEN, 1, cv2.LINE_AA)
    assert trace_ecg(strip, TraceConfig()).reason == S.NO_ECG_TRACE


def test_no_real_dicom_yields_a_trace(shared_data):
    """None of the real DICOMs carries an ECG trace: neither colour mode accepts one (Doppler colour, markers,
    text and the orientation dot are rejected by the plausibility checks)."""
    import pydicom

    from eee_ray.ingest.decode import decode, echo_rows

    seen = 0
    for f in sorted((shared_data / "dicom").rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        if "PixelData" not in ds:
            continue
        dec = decode(ds, int(ds.get("NumberOfFrames", 1) or 1), 0.30, 224, 0.9)
        strip = dec.first_rgb[echo_rows(dec.first_rgb.shape[0], 0.30):]
        for mode in ("paper", "auto"):
            res = trace_ecg(strip.copy(), TraceConfig(), mode)
            assert res.reason is not None, f"{f.name} ({mode}): accepted a trace"
        seen += 1
    assert seen >= 12


def test_hard_case_cines_decode_trace_and_render_their_qa_picture(tmp_path):
    """Hard cases written as DICOM (JPEG Baseline 4:2:2, PALETTE COLOR RLE Lossless) get the in-memory verdict
    through the ingest's per-file processing (header checks, real decoders), and each QA picture shows the lit
    pixels (magenta), the traced line and the verdict."""
    import os

    from eee_ray.ingest import IngestConfig
    from eee_ray.ingest.discover import InputFile
    from eee_ray.ingest.process import process_file
    from eee_ray.ingest.qa import render
    from eee_ray.synth.trace_cases import render_case, write_case_dicom

    cfg = IngestConfig(trace_color="auto")
    for kind in ("thin_aa", "palette_rle", "acuson_like", "gap"):
        case = render_case(kind, 0)
        path = write_case_dicom(case, tmp_path / f"{kind}.dcm")
        out = process_file(InputFile(f"{kind}.dcm", os.fsencode(path), 1, 1), cfg, keep=True)
        assert out.manifest["reason"] in case.expected, (kind, out.manifest)
        assert out.decoded.path == ("pydicom" if kind == "palette_rle" else "jpeg_fast")
        picture = render(out, cfg)
        strip = picture[44 + case.strip_y0:]
        assert (strip == (255, 0, 255)).all(axis=2).any()            # the lit pixels, in magenta
        if out.trace.x0 >= 0:                                        # the traced line drawn over its columns
            base = cv2.cvtColor(case.frame, cv2.COLOR_RGB2BGR)[case.strip_y0:]
            base[out.trace.mask.astype(bool)] = (255, 0, 255)
            line = (strip != base).any(axis=2)[:, out.trace.x0:out.trace.x1 + 1].any(axis=0)
            assert line.mean() > 0.9
        banner = picture[:44]
        want = (0, 200, 0) if case.expected == (None,) else (0, 0, 255)  # BGR verdict colour
        assert (banner == want).all(axis=2).any()


def test_clipped_qrs_spikes_are_not_taken_for_cursor_lines():
    """A full-height 1-px line at every beat is a trace clipped at both edges (an R spike in one column), not a row
    of cursors: only a single such line is a cursor, removed with its margin."""
    strip = draw(ecg_like(600, 20), thickness=1)
    one = strip.copy()
    one[:, 300] = PAPER_GREEN                  # one full-height line: a cursor
    assert trace_ecg(one, TraceConfig()).reason is None
    for x in range(80, 620, 110):
        strip[:, x] = PAPER_GREEN              # one at every beat: clipped spikes
    assert trace_ecg(strip, TraceConfig()).reason == S.ECG_AMPLITUDE_CLIPPED


def test_a_white_cursor_over_a_qrs_is_no_break():
    """A white cursor line hides the steep upstroke of a broad R wave beneath it: the trace on either side is
    accepted, not a vertical break (the same step without the cursor over it is one)."""
    ys = ecg_like(600, 20)
    ys[300:312] += 45                          # a broad R: up 45 px within one column, down again 12 columns on
    strip = draw(ys, thickness=1)
    assert trace_ecg(strip, TraceConfig()).reason is None  # drawn whole, the upstroke joins the two levels
    strip[:, 318:321] = 255                    # a 3-px white cursor over the upstroke (columns 319-320)
    res = trace_ecg(strip, TraceConfig())
    assert res.reason is None, res.detail
