"""A physiological ECG model: a 3-D heart dipole built from per-beat P-QRS-T Gaussians (after McSharry's ECGSYN, in
vector form), projected onto the 12 lead axes, with heart-rate variability, baseline wander and noise.

Projecting one dipole keeps the lead identities of real ECGs (III = II - I, aVR = -(I + II)/2, ...). The patient's
latent structure changes the morphology weakly: wall thickness raises QRS voltage and flattens/inverts T (LVH strain),
a large ventricle widens QRS and lowers voltage, a valve jet (atrial load) widens the P wave and adds a terminal
negative P in V1. Axes x = left, y = inferior (down), z = anterior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FS = 500                     # Hz, MIMIC-IV-ECG
RECORD_SECONDS = 10.0
# MIMIC-IV-ECG stores the leads in this order (docs/contract.md, MIMIC-IV-ECG).
LEAD_NAMES = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _lead_matrix() -> np.ndarray:
    """12 x 3 projection; limb leads from I and II so Einthoven/Goldberger hold exactly."""
    lead_i = np.array([1.0, 0.0, 0.0])
    lead_ii = np.array([np.cos(np.pi / 3), np.sin(np.pi / 3), 0.0])
    limb = {
        "I": lead_i, "II": lead_ii, "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2, "aVF": lead_ii - lead_i / 2, "aVL": lead_i - lead_ii / 2,
    }
    # precordial leads: horizontal-plane angles from the left (deg), slightly inferior, V1 right-anterior
    pre = {f"V{i + 1}": _unit([np.cos(np.radians(a)), 0.15, np.sin(np.radians(a))]) * g
           for i, (a, g) in enumerate(zip([115, 95, 75, 55, 30, 5], [1.1, 1.5, 1.6, 1.5, 1.2, 1.0]))}
    return np.stack([{**limb, **pre}[n] for n in LEAD_NAMES])


LEAD_MATRIX = _lead_matrix()


@dataclass
class Wave:
    """One Gaussian component of the dipole: offset from the R peak (s, scaled by sqrt(RR) when ``rate_scaled``)."""

    direction: np.ndarray
    amplitude: float   # mV
    offset: float      # s
    width: float       # s (Gaussian sigma)
    rate_scaled: bool = False


@dataclass
class Morphology:
    """A patient's beat template plus rhythm parameters."""

    waves: list[Wave]
    heart_rate: float            # bpm at rest
    af: bool = False
    wander_mv: float = 0.08
    noise_mv: float = 0.012


def random_rotation(rng: np.random.Generator, sd_deg: float) -> np.ndarray:
    """A small random rotation (per-patient electrical axis / heart position)."""
    ax, ay, az = np.radians(rng.normal(0.0, sd_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class ControlEffects:
    """Optional changes to a patient's beat template (the positive-control world, ``eee_ray.positive_control``).

    ``strain``: scale of the LVH strain pattern (T flattening and inversion); 1 is the default model, 0 removes it.
    ``wall_qrs_widening``: relative QRS widening per unit of wall thickness (a voltage-free marker of the wall).
    ``qrs_gain`` / ``t_gain``: per-patient factors on the QRS and T amplitudes (electrode placement, body habitus:
    nuisance that makes the QRS voltage a weak marker). ``rotation``: an extra per-patient rotation of the heart
    vector (axis nuisance).
    """

    strain: float = 1.0
    wall_qrs_widening: float = 0.0
    qrs_gain: float = 1.0
    t_gain: float = 1.0
    rotation: np.ndarray | None = None


def patient_morphology(rng: np.random.Generator, wall_thickness: float, lv_size: float, valve_jet: float,
                       af: bool, control: ControlEffects | None = None) -> Morphology:
    """Beat template of one patient: population variety (axis, voltage, intervals) plus weak latent effects.

    ``control`` (None: the default model) changes the template without drawing from ``rng``, so the default
    worlds stay the same."""
    rot = random_rotation(rng, 12.0)
    volt = float(np.exp(rng.normal(0.0, 0.22))) * (1.0 - 0.06 * np.clip(lv_size, -2, 3))
    lvh = max(wall_thickness, -1.5)
    qrs_w = float(np.exp(rng.normal(0.0, 0.06))) * (1.0 + 0.10 * max(lv_size, -1.0))
    strain_scale = 1.0
    if control is not None:
        if control.rotation is not None:
            rot = control.rotation @ rot
        volt *= control.qrs_gain
        qrs_w *= max(1.0 + control.wall_qrs_widening * lvh, 0.5)
        strain_scale = control.strain
    # left-axis drift with a dilated ventricle: rotate the QRS towards superior (about z)
    la = np.radians(-8.0 * np.clip(lv_size, -1, 3))
    rz = np.array([[np.cos(la), -np.sin(la), 0], [np.sin(la), np.cos(la), 0], [0, 0, 1]])
    qrs_rot = rot @ rz
    r_dir = qrs_rot @ _unit([0.55, 0.75, -0.15])
    strain = 0.35 * max(lvh - 0.6, 0.0) * strain_scale
    t_dir = _unit(rot @ _unit([0.6, 0.6, 0.4]) - strain * r_dir)
    t_amp = 0.38 * float(np.exp(rng.normal(0.0, 0.2))) * (1.0 - 0.25 * max(lvh - 0.6, 0.0) * strain_scale)
    if control is not None:
        t_amp *= control.t_gain
    jet = max(valve_jet, -1.0)
    waves = [
        Wave(qrs_rot @ _unit([-0.5, 0.2, 0.8]), 0.12 * volt, -0.030 * qrs_w, 0.008 * qrs_w),
        Wave(r_dir, 1.25 * volt * (1.0 + 0.12 * lvh), 0.0, 0.011 * qrs_w),
        Wave(qrs_rot @ _unit([0.35, 0.1, -0.9]), 0.45 * volt * (1.0 + 0.14 * lvh), 0.018 * qrs_w, 0.011 * qrs_w),
        Wave(qrs_rot @ _unit([-0.4, -0.5, -0.7]), 0.35 * volt * (1.0 + 0.12 * lvh), 0.034 * qrs_w, 0.010 * qrs_w),
        Wave(t_dir, t_amp, 0.22, 0.055, rate_scaled=True),
        Wave(t_dir, 0.6 * t_amp, 0.29, 0.035, rate_scaled=True),
    ]
    if not af:
        pr = float(rng.uniform(0.14, 0.19))
        p_w = 0.022 * (1.0 + 0.15 * jet)
        waves += [
            Wave(rot @ _unit([0.5, 0.8, 0.2]), 0.13 * (1.0 + 0.10 * jet), -pr - 0.01, p_w),
            Wave(rot @ _unit([0.3, 0.4, -0.8]), 0.03 + 0.03 * max(jet, 0.0), -pr + 0.025, p_w * 0.9),
        ]
    hr = float(np.clip(rng.normal(74.0, 10.0), 50.0, 110.0))
    return Morphology(waves=waves, heart_rate=hr, af=af,
                      wander_mv=float(rng.uniform(0.03, 0.12)), noise_mv=float(rng.uniform(0.006, 0.018)))


def r_peak_times(rng: np.random.Generator, morph: Morphology, hr: float, start: float, stop: float) -> np.ndarray:
    """R-peak times covering [start, stop]: sinus rhythm with respiratory (0.25 Hz) and Mayer-wave (0.1 Hz) HRV,
    or irregularly irregular RR for atrial fibrillation."""
    rr0 = 60.0 / hr
    phase_resp, phase_mayer = rng.uniform(0, 2 * np.pi, 2)
    resp_f = rng.uniform(0.2, 0.33)
    t = start - rng.uniform(0.0, rr0) - 1.5
    peaks = []
    while t < stop + 1.5:
        peaks.append(t)
        if morph.af:
            rr = rr0 * float(np.exp(rng.normal(0.0, 0.18)))
        else:
            rr = rr0 * (1.0 + 0.035 * np.sin(2 * np.pi * resp_f * t + phase_resp)
                        + 0.025 * np.sin(2 * np.pi * 0.1 * t + phase_mayer)) + rng.normal(0.0, 0.008)
        t += float(np.clip(rr, 0.33, 1.7))
    return np.asarray(peaks)


def dipole(t: np.ndarray, peaks: np.ndarray, morph: Morphology) -> np.ndarray:
    """Heart vector (len(t) x 3, mV) as sums of Gaussians per wave and beat."""
    out = np.zeros((len(t), 3))
    rr = np.diff(peaks, append=peaks[-1] + (peaks[-1] - peaks[-2] if len(peaks) > 1 else 0.8))
    for k, r in enumerate(peaks):
        scale = np.sqrt(np.clip(rr[k], 0.33, 1.7))
        for w in morph.waves:
            centre = r + w.offset * (scale if w.rate_scaled else 1.0)
            width = w.width * (scale if w.rate_scaled else 1.0)
            lo = np.searchsorted(t, centre - 5 * width)
            hi = np.searchsorted(t, centre + 5 * width)
            if hi <= lo:
                continue
            g = w.amplitude * np.exp(-0.5 * ((t[lo:hi] - centre) / width) ** 2)
            out[lo:hi] += g[:, None] * w.direction[None, :]
    return out


def _band_noise(rng: np.random.Generator, n: int, fs: float, lo: float, hi: float) -> np.ndarray:
    """Unit-variance noise restricted to [lo, hi] Hz (FFT mask)."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec[(f < lo) | (f > hi)] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


class NoiseBank:
    """Real MIT-BIH NSTDB noise (baseline wander, electrode motion, muscle) when a file is given, else None."""

    def __init__(self, path: str = "") -> None:
        self.tracks: dict[str, np.ndarray] = {}
        if path:
            import h5py

            with h5py.File(path, "r") as h:
                for name in ("bw", "em", "ma"):
                    x = np.asarray(h[name][:], dtype=float)  # 360 Hz, 2 channels
                    n500 = int(len(x) * FS / 360)
                    grid = np.arange(n500) * 360.0 / FS
                    res = np.stack([np.interp(grid, np.arange(len(x)), x[:, c]) for c in range(x.shape[1])], 1)
                    self.tracks[name] = res - res.mean(0)

    def sample(self, rng: np.random.Generator, name: str, n: int, leads: int) -> np.ndarray | None:
        track = self.tracks.get(name)
        if track is None or len(track) < n:
            return None
        out = np.empty((n, leads))
        for j in range(leads):
            s = int(rng.integers(0, len(track) - n))
            c = track[s:s + n, int(rng.integers(0, track.shape[1]))]
            out[:, j] = c / (c.std() + 1e-12)
        return out


def ecg_leads(rng: np.random.Generator, morph: Morphology, hr: float, duration: float, fs: float = FS,
              noise: NoiseBank | None = None, start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """12-lead ECG (n x 12, mV) over [start, start + duration) and all R-peak times of the rhythm (s), which reach
    ~1.5 s beyond both ends (the ventricle's phase at the clip start needs the beat before it)."""
    n = int(round(duration * fs))
    t = start + np.arange(n) / fs
    peaks = r_peak_times(rng, morph, hr, start, start + duration)
    sig = dipole(t, peaks, morph) @ LEAD_MATRIX.T
    if morph.af:  # fibrillatory f-waves: 4-8 Hz atrial activity, mostly inferior/V1
        f_dir = LEAD_MATRIX @ _unit([0.2, 0.7, 0.6])
        sig += 0.04 * _band_noise(rng, n, fs, 4.0, 8.0)[:, None] * f_dir[None, :]
    n_leads = sig.shape[1]
    bank_bw = noise.sample(rng, "bw", n, 3) if noise else None
    if bank_bw is not None:
        wander3 = bank_bw
    else:
        wander3 = np.stack([_band_noise(rng, n, fs, 0.05, 0.5) for _ in range(3)], 1)
    wander = morph.wander_mv * (wander3 @ (LEAD_MATRIX.T * 0.8 + 0.2))
    muscle = noise.sample(rng, "ma", n, n_leads) if noise else None
    if muscle is None:
        muscle = _band_noise(rng, n, fs, 15.0, 100.0)[:, None] * rng.normal(1.0, 0.2, n_leads)[None, :]
    sig = sig + wander + morph.noise_mv * muscle + 0.004 * rng.normal(size=sig.shape)
    # electrocardiographs record I and II and derive the other limb leads, so the identities hold on the noise too
    lead = {name: sig[:, j] for j, name in enumerate(LEAD_NAMES)}
    derived = {"III": lead["II"] - lead["I"], "aVR": -(lead["I"] + lead["II"]) / 2,
               "aVF": lead["II"] - lead["I"] / 2, "aVL": lead["I"] - lead["II"] / 2}
    for name, values in derived.items():
        sig[:, LEAD_NAMES.index(name)] = values
    return sig, peaks


def heart_rate_bpm(peaks: np.ndarray) -> float:
    """Mean heart rate from R-peak times."""
    return float(60.0 / np.mean(np.diff(peaks))) if len(peaks) > 1 else float("nan")
