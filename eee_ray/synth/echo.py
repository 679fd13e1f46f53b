"""Echo cine frames: a sector scan with speckle, a beating left ventricle shaped by the patient's latents, a valve jet,
burned-in text and a green orientation dot in the top part; the ECG strip below (identical on every frame)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from eee_ray.synth.strip import TRACE_RGB


@dataclass
class Anatomy:
    """Geometry in units of the echo area's height, from the standardised latents."""

    cavity_short: float      # LV cavity half-width at end-diastole
    cavity_long: float       # LV cavity half-length
    wall: float              # myocardial wall thickness
    shortening: float        # fractional shortening of the short axis at peak systole
    jet: float               # valve-jet strength 0..1 (bright regurgitant spot in systole)

    @classmethod
    def from_latents(cls, wall_thickness: float, lv_size: float, valve_jet: float) -> "Anatomy":
        return cls(
            cavity_short=0.105 * float(np.clip(1.0 + 0.17 * lv_size, 0.6, 1.6)),
            cavity_long=0.27 * float(np.clip(1.0 + 0.08 * lv_size, 0.75, 1.3)),
            wall=0.032 * float(np.clip(1.0 + 0.30 * wall_thickness, 0.45, 2.0)),
            shortening=float(np.clip(0.32 - 0.07 * lv_size, 0.08, 0.45)),
            jet=float(1.0 / (1.0 + np.exp(-2.0 * (valve_jet - 0.5)))),
        )


def contraction(t: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Systolic contraction 0..1 at times ``t``: starts 40 ms after each R peak, peaks at the end of T (~0.33 s at
    60 bpm, scaled by sqrt(RR)), relaxes over the same time; the ECG and the ventricle share this rhythm."""
    idx = np.searchsorted(peaks, t, side="right") - 1
    idx = np.clip(idx, 0, len(peaks) - 1)
    tau = t - peaks[idx]
    rr = np.diff(peaks, append=peaks[-1] + 0.8)[idx]
    ts = 0.30 * np.sqrt(np.clip(rr, 0.33, 1.7))
    x = np.clip((tau - 0.04) / (2 * ts), 0.0, 1.0)
    return np.where(tau >= 0.04, 0.5 * (1 - np.cos(2 * np.pi * x)), 0.0)


class CineRenderer:
    """Renders the frames of one cine: the static layers (sector, speckle, text, dot, ECG strip) are composed once
    per speckle pattern; each frame redraws only the box around the heart (at half resolution, then upsampled)."""

    def __init__(self, strip: np.ndarray, echo_rows: int, anatomy: Anatomy, rng: np.random.Generator,
                 texts: list[str]) -> None:
        self.anat = anatomy
        h, w = echo_rows, strip.shape[1]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        apex_y = 0.03 * h
        tilt = np.radians(rng.normal(0.0, 4.0))
        depth = np.hypot(xx - w / 2, yy - apex_y)
        half = np.radians(rng.uniform(36.0, 42.0))
        fan = (depth < 0.97 * h) & (np.abs(np.arctan2(xx - w / 2, yy - apex_y)) < half) & (depth > 0.02 * h)
        # heart coordinates (units of h): long axis along the beam, slightly tilted
        cx, cy = w / 2 + rng.normal(0, 0.02) * h, apex_y + rng.uniform(0.44, 0.50) * h
        dx, dy = (xx - cx) / h, (yy - cy) / h
        u = dx * np.cos(tilt) - dy * np.sin(tilt)           # across the ventricle
        v = dx * np.sin(tilt) + dy * np.cos(tilt)           # along it (positive = towards the valves)
        self.gain = float(rng.uniform(0.85, 1.15))          # the sonographer's overall gain
        tissue = self.gain * (55.0 + 25.0 * np.exp(-depth / (0.25 * h)) - 25.0 * (depth / h))
        base = np.where(fan, tissue, 0.0).astype(np.float32)
        speckle = [rng.rayleigh(0.8, (h, w)).astype(np.float32) for _ in range(3)]
        self.speckle = [0.5 * s + 0.5 * cv2.GaussianBlur(s, (3, 3), 0.7) for s in speckle]
        overlay = np.zeros((h, w, 3), np.uint8)
        scale = max(0.35, h / 700)
        for i, text in enumerate(texts):
            cv2.putText(overlay, text, (int(0.015 * w), int((i + 1) * 0.055 * h) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (200, 200, 200) if i == 0 else (140, 140, 140), 1, cv2.LINE_AA)
        for k in range(1, 9):  # depth ticks along the right edge of the sector
            y = int(apex_y + k * 0.11 * h)
            if y < h - 4:
                cv2.line(overlay, (int(0.93 * w), y), (int(0.93 * w) + 6, y), (170, 170, 170), 1)
        cv2.circle(overlay, (int(w / 2 - 0.55 * h * np.sin(half)), int(apex_y + 0.08 * h)),
                   max(3, int(0.012 * h)), TRACE_RGB, -1, cv2.LINE_8)
        lit = overlay.any(axis=2)
        self.backgrounds = []
        for s in self.speckle:
            top = np.repeat(np.clip(base * s, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            top[lit] = overlay[lit]
            self.backgrounds.append(np.concatenate([top, strip], axis=0))
        # only this box changes from frame to frame
        a = anatomy
        reach = (np.abs(u) < 1.3 * a.cavity_short + 2.5 * a.wall + 0.16) & \
            (v > -(a.cavity_long + 2.0 * a.wall + 0.03)) & (v < 0.16 * a.cavity_long + 0.3)
        ys, xs = np.nonzero(reach)
        self.box = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        self.box_shape = (self.box[1].stop - self.box[1].start, self.box[0].stop - self.box[0].start)
        self.u, self.v = u[self.box][::2, ::2], v[self.box][::2, ::2]
        self.base = base[self.box][::2, ::2]
        self.fan_box = fan[self.box][::2, ::2]
        self.overlay_box = overlay[self.box]
        self.lit_box = lit[self.box]

    def heart(self, c: float) -> np.ndarray:
        """Echo intensity (before speckle, half resolution) at contraction ``c`` (0 diastole .. 1 peak systole)."""
        a = self.anat
        short = a.cavity_short * (1.0 - a.shortening * c)
        long_ = a.cavity_long * (1.0 - 0.35 * a.shortening * c)
        wall = a.wall * (1.0 + 0.6 * a.shortening * c)
        u, v = self.u, self.v
        vv = np.minimum(v, 0.0)                             # ellipse towards the apex, straight walls to the base
        r_cav = np.sqrt((u / short) ** 2 + (vv / long_) ** 2)
        r_out = np.sqrt((u / (short + wall)) ** 2 + (vv / (long_ + wall)) ** 2)
        base_v = 0.16 * a.cavity_long
        cavity = (r_cav < 1.0) & (v < base_v)
        myo = (r_out < 1.0) & ~cavity & (v < base_v + wall)
        img = self.base.copy()
        img[myo] = self.gain * (150.0 + 30.0 * c)
        blood = cavity | (np.sqrt((u / (0.9 * a.cavity_short + 0.02)) ** 2 + ((v - base_v - 0.13) / 0.12) ** 2) < 1.0)
        blood |= np.sqrt(((u + short + wall + 0.075) / 0.06) ** 2 + ((v + 0.02) / (0.75 * long_)) ** 2) < 1.0
        img[blood & ~myo] = 6.0
        if c > 0.2:  # mitral leaflets close in systole
            img[(np.abs(v - base_v) < 0.006) & (np.abs(u) < short)] = 200.0
        if a.jet > 0.05:  # valve jet: a bright plume into the atrium in systole, size/brightness from the latent
            jet = np.exp(-((u / (0.03 + 0.04 * a.jet)) ** 2 + ((v - base_v - 0.07) / (0.04 + 0.06 * a.jet)) ** 2))
            img += jet * (230.0 * a.jet * c)
        return img * self.fan_box

    def frame(self, c: float, k: int) -> np.ndarray:
        """One RGB frame: the heart at contraction ``c`` over static layers with speckle pattern ``k``."""
        out = self.backgrounds[k % 3].copy()
        full = cv2.resize(self.heart(c), self.box_shape, interpolation=cv2.INTER_LINEAR)
        grey = np.clip(full * self.speckle[k % 3][self.box], 0, 255).astype(np.uint8)
        region = out[self.box]
        region[:] = grey[:, :, None]
        region[self.lit_box] = self.overlay_box[self.lit_box]
        return out
