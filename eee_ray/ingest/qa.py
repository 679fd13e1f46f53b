"""QA pictures: first frames with the lit trace pixels and the traced waveform drawn over the strip, plus the
verdict, so a user can see at a glance what was accepted and why something was rejected."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from eee_ray import storage
from eee_ray.ingest import schema as S
from eee_ray.ingest.config import IngestConfig
from eee_ray.ingest.decode import echo_rows
from eee_ray.ingest.discover import InputFile
from eee_ray.ingest.process import Outcome, process_file
from eee_ray.io import atomic_write_bytes

# Rejections that happen after decoding: their first frame is worth a look.
TRACED_REASONS = (S.NO_ECG_TRACE, S.ECG_AMPLITUDE_CLIPPED, S.ECG_DISCONTINUOUS, S.ECG_HSV_OUTLIERS,
                  S.ECG_LOW_COVERAGE)


def render(outcome: Outcome, cfg: IngestConfig) -> np.ndarray:
    """BGR picture of the first frame: lit pixels in magenta, the traced waveform in white, the verdict on top."""
    img = cv2.cvtColor(outcome.decoded.first_rgb, cv2.COLOR_RGB2BGR)
    y0 = echo_rows(img.shape[0], cfg.ecg_roi_fraction)
    strip = img[y0:]
    tr = outcome.trace
    strip[tr.mask.astype(bool)] = (255, 0, 255)
    if tr.x0 >= 0 and tr.ecg_px.size:
        h = strip.shape[0]
        ys = (h - 1) / 2.0 - tr.ecg_px
        pts = np.stack([np.arange(tr.x0, tr.x1 + 1), ys], axis=1).round().astype(np.int32)
        cv2.polylines(strip, [pts.reshape(-1, 1, 2)], False, (255, 255, 255), 1, cv2.LINE_AA)
    cv2.line(img, (0, y0), (img.shape[1] - 1, y0), (0, 255, 255), 1)
    m = outcome.manifest
    verdict = "OK" if m["status"] == S.OK else f"REJECTED: {m['reason']}"
    colour = (0, 200, 0) if m["status"] == S.OK else (0, 0, 255)
    banner = np.zeros((44, img.shape[1], 3), np.uint8)
    for i, text in enumerate((f"{verdict}   {m['path']}", m["detail"][:100])):
        cv2.putText(banner, text, (6, 17 + 19 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour if i == 0 else
                    (220, 220, 220), 1, cv2.LINE_AA)
    return np.vstack([banner, img])


def pick(manifest, n: int) -> list[str]:
    """Up to n paths: accepted and ECG-rejected files alternately, spread evenly over the (sorted) manifest."""
    ok = manifest[manifest.status == S.OK].path.sort_values().tolist()
    bad = manifest[manifest.reason.isin(TRACED_REASONS)].path.sort_values().tolist()

    def spread(paths: list[str], k: int) -> list[str]:
        if k >= len(paths):
            return paths
        return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, k).round()]

    n_bad = min(len(bad), n // 2)
    chosen = spread(ok, n - n_bad)
    return chosen + spread(bad, n - len(chosen))


def write_qa(cfg: IngestConfig, inp: str | Path, out: str | Path, files: list[InputFile]) -> list[str]:
    """Re-trace ``cfg.qa_samples`` files on the driver and write ``OUTPUT/qa/*.png``; returns the PNG paths."""
    from eee_ray.ingest.pipeline import read_manifest

    by_path = {f.path: f for f in files}
    written = []
    for path in pick(read_manifest(out), cfg.qa_samples):
        item = by_path.get(path)
        if item is None:
            continue
        outcome = process_file(item, cfg, keep=True)
        if outcome.decoded is None:
            continue
        ok, png = cv2.imencode(".png", render(outcome, cfg))
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path)
        target = storage.join(out, "qa", f"{outcome.manifest['status']}__{name}.png")
        atomic_write_bytes(target, png.tobytes())
        written.append(str(target))
    return written
