"""The synthetic N-MNIST simulator: one MNIST digit in, the events of its simulated recording out.

Orchard et al. (2015, Front. Neurosci. 9:437) showed each MNIST digit on a monitor and moved an ATIS event
camera (34 x 34 pixels used) in three ~100 ms saccades along a triangle, so the digit slides a few pixels
across the sensor and its edges make events. This module simulates that recording:

1. Scene: the 28 x 28 digit on a screen (dark on white: that is what the real polarities say, see
   ``SynthParams``), placed in the 34 x 34 frame, blurred (optics + pixel area) and moved along the
   saccade path. Path, speed profiles and pixel constants were fitted to 20 real recordings of the same
   MNIST digits (counts, polarities, burst profile, event images; docs/synthetic-nmnist.md).
2. Pixels: each pixel sees log luminance ``log(black + (1 - black) * v)``, low-pass filtered (photoreceptor
   bandwidth). It emits an ON (OFF) event when it rose (fell) by more than the pixel's own contrast
   threshold since its last reset; thresholds
   vary from pixel to pixel (Gaussian mismatch). After an event the pixel is held in reset for a refractory
   period (changes during it are lost, as in a real DVS/ATIS pixel).
3. Sensor noise: Poisson background events at a low rate per pixel, Gaussian timestamp jitter.

Everything random comes from one ``numpy.random.Generator`` per sample whose seed is derived from
``(seed, split, index)``, so a sample's events do not depend on how many workers made the dataset.
The time-stepped pixel loop is compiled with numba; the rest is numpy. Writing a whole dataset is
``snnbp.data.synthetic.writer``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np

from snnbp.data.events import EVENT_DTYPE

GENERATOR_VERSION = "1.0"
SPLIT_CODES = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SynthParams:
    """Parameters of the simulated recording. Lengths in sensor pixels, times in ms unless named _us.

    The defaults were fitted to the 20 real recordings, simulating the same MNIST digits: events per
    sample (and their spread across digits), ON fraction, 5 ms burst profile, per-window ON/OFF event
    images, same-pixel intervals, background rate.
    """

    width: int = 34  # sensor pixels
    height: int = 34
    # Geometry, fitted to the real recordings: where the digit's pixel (0, 0) sits on the sensor at t = 0,
    # and the image displacement (dx, dy) of each saccade. The three nearly close a triangle: down (and a
    # little right), up-right, left.
    offset_x: float = 0.5
    offset_y: float = 1.25
    saccade_dx: tuple[float, ...] = (1.25, 3.75, -4.5)
    saccade_dy: tuple[float, ...] = (5.75, -5.5, -0.5)
    # Timing: start and end of each saccade (ms) and its speed profile u^a (1 - u)^b, u in [0, 1] over the
    # saccade. Fitted to the real 5 ms event-rate profile (slow start of the first saccade, abrupt third).
    saccade_start_ms: tuple[float, ...] = (0.0, 105.0, 217.5)
    saccade_end_ms: tuple[float, ...] = (82.5, 192.5, 305.0)
    saccade_shape_a: tuple[float, ...] = (1.8, 1.65, 1.25)
    saccade_shape_b: tuple[float, ...] = (1.2, 1.8, 1.95)
    duration_ms: tuple[float, float] = (304.0, 313.0)  # uniform range of the recording length
    # Optics and display: blur sigma (px) on top of bilinear pixel sampling; screen luminance
    # level ** gamma over a black level (fraction of white, which also keeps log() finite), where level
    # is 1 - pixel / 255 for a dark digit on a white screen. The real recordings need the dark digit:
    # their ON events lie on the trailing edges of the moving strokes (white on black puts them on the
    # leading edges), and per-digit event counts then follow the real ones twice as closely.
    blur_sigma_px: float = 0.25
    display_gamma: float = 1.0
    black_level: float = 0.07
    dark_digit: bool = True
    # Pixel: photoreceptor low-pass time constant, contrast thresholds (log units) with Gaussian
    # pixel-to-pixel mismatch, refractory period; then sensor noise and timestamp jitter.
    photoreceptor_tau_ms: float = 3.0
    threshold_on: float = 0.32
    threshold_off: float = 0.31
    threshold_mismatch: float = 0.03
    refractory_us: float = 1300.0
    noise_rate_hz: float = 0.5  # background events per pixel per second (ON and OFF together)
    noise_on_fraction: float = 0.9  # real background activity is mostly ON (91 % at the sensor border)
    jitter_us: float = 80.0  # Gaussian sigma
    dt_us: float = 500.0  # simulation step; crossing times are interpolated within a step

    def to_json(self) -> dict:
        return asdict(self)


DEFAULT_PARAMS = SynthParams()


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for one sample: a function of (seed, split, 0-based index) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)])))


# --------------------------------------------------------------------------------------------- scene


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float image (zero outside), same shape."""
    if sigma <= 0:
        return img
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 0, img)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 1, out)


def saccade_path(params: SynthParams, times_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image displacement (dx, dy) in pixels at each time (ms), both shaped like ``times_ms``.

    The path is the same for every sample: the real recordings all share one mechanical path.

    Each saccade's speed follows u^a (1 - u)^b on its interval; the position is its normalised integral
    times the saccade's displacement, so the image ends exactly where the saccade says.
    """
    dx = np.zeros_like(times_ms)
    dy = np.zeros_like(times_ms)
    u_fine = np.linspace(0.0, 1.0, 401)
    for k in range(len(params.saccade_dx)):
        t0, t1 = params.saccade_start_ms[k], params.saccade_end_ms[k]
        speed = u_fine ** params.saccade_shape_a[k] * (1.0 - u_fine) ** params.saccade_shape_b[k]
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]))])
        cum /= cum[-1]
        frac = np.interp((times_ms - t0) / (t1 - t0), u_fine, cum)  # 0 before, 1 after the saccade
        dx += params.saccade_dx[k] * frac
        dy += params.saccade_dy[k] * frac
    return dx, dy


# --------------------------------------------------------------------------------------------- pixels


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear(scene, outside, sx, sy):
    """Scene value at fractional position (sx, sy) in scene pixels; ``outside`` beyond its border."""
    Hs, Ws = scene.shape
    x0 = int(np.floor(sx))
    y0 = int(np.floor(sy))
    fx = sx - x0
    fy = sy - y0
    v = 0.0
    for dy in range(2):
        yy = y0 + dy
        wy = fy if dy == 1 else 1.0 - fy
        for dx in range(2):
            xx = x0 + dx
            wx = fx if dx == 1 else 1.0 - fx
            inside = 0 <= yy < Hs and 0 <= xx < Ws
            v += wx * wy * (scene[yy, xx] if inside else outside)
    return v


@numba.njit(cache=True, nogil=True)
def _pixel_events(scene, outside, org_x, org_y, t_us, thr_on, thr_off, ref0, refractory_us, black, lp_gain,
                  out_x, out_y, out_p, out_t):
    """Run every sensor pixel through the time grid; write events into the out_* buffers, return their count.

    scene: (Hs, Ws) float64 blurred screen luminance in [0, 1], ``outside`` beyond its border.
    org_x, org_y: (T,) position of scene pixel (0, 0) on the sensor at each step; t_us: (T,) step times.
    thr_on, thr_off, ref0: (H, W) per-pixel thresholds and initial reference offset (log units).
    lp_gain: per-step gain of the photoreceptor low-pass, 1 - exp(-dt / tau) (1 = no filtering).
    out_*: buffers of at least H * W * (duration / refractory + 2) entries (the most a pixel can emit).
    Events get the linearly interpolated threshold-crossing time; they are not time-sorted.
    """
    H, W = thr_on.shape
    Hs, Ws = scene.shape
    n = 0
    ox_lo, ox_hi, oy_lo, oy_hi = org_x.min(), org_x.max(), org_y.min(), org_y.max()
    for y in range(H):
        for x in range(W):
            # pixels the digit never reaches (blurred support + path) see a constant screen: no events
            if x - ox_lo < -1.0 or x - ox_hi > Ws or y - oy_lo < -1.0 or y - oy_hi > Hs:
                continue
            # start settled, each pixel at a random distance from its next threshold
            v_last = _bilinear(scene, outside, x - org_x[0], y - org_y[0])
            raw = np.log(black + (1.0 - black) * v_last)
            prev = raw
            ref = prev + ref0[y, x]
            hold_until = -1.0
            for k in range(1, t_us.shape[0]):
                v = _bilinear(scene, outside, x - org_x[k], y - org_y[k])
                if v != v_last:  # on plain screen the value repeats: skip the logarithm
                    raw = np.log(black + (1.0 - black) * v)
                    v_last = v
                lv = prev + lp_gain * (raw - prev)
                if t_us[k] < hold_until:
                    ref = lv  # held in reset: the reference follows the input, changes are lost
                else:
                    d = lv - ref
                    th = thr_on[y, x] if d > 0 else thr_off[y, x]
                    if abs(d) >= th and n < out_t.shape[0]:  # the bound never bites with buffers as documented
                        # crossing time: where the straight line prev -> lv crossed ref +- th
                        target = ref + th if d > 0 else ref - th
                        f = (target - prev) / (lv - prev) if lv != prev else 1.0
                        te = t_us[k - 1] + min(max(f, 0.0), 1.0) * (t_us[k] - t_us[k - 1])
                        out_x[n] = x
                        out_y[n] = y
                        out_p[n] = 1 if d > 0 else 0
                        out_t[n] = te
                        n += 1
                        hold_until = te + refractory_us
                        ref = lv
                prev = lv
    return n


def _noise_events(params: SynthParams, duration_us: float, rng: np.random.Generator):
    """Background activity: Poisson events, uniform over pixels and time, mostly ON. Returns x, y, p, t."""
    n_pix = params.width * params.height
    n = rng.poisson(params.noise_rate_hz * n_pix * duration_us * 1e-6)
    pix = rng.integers(0, n_pix, size=n)
    on = (rng.random(n) < params.noise_on_fraction).astype(np.uint8)
    return pix % params.width, pix // params.width, on, rng.uniform(0, duration_us, size=n)


def synthesize_sample(image: np.ndarray, rng_or_seed, params: SynthParams = DEFAULT_PARAMS) -> np.ndarray:
    """Simulate the N-MNIST recording of one digit.

    image: (28, 28) uint8 MNIST digit (0 = background, 255 = stroke).
    rng_or_seed: numpy Generator, or an int seed.
    Returns a structured array of EVENT_DTYPE (x, y in [0, 34), p 1 = ON, t in integer microseconds),
    sorted by time, all within [0, duration) where duration is drawn from ``params.duration_ms``.
    """
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D digit image, got shape {image.shape}")
    if params.dt_us <= 0 or params.refractory_us < 0 or params.duration_ms[0] <= 0:
        raise ValueError("dt_us and duration_ms must be positive and refractory_us not negative")
    pad = int(np.ceil(3 * params.blur_sigma_px)) + 1  # room for the blur to spread outside the digit
    level = image.astype(np.float64) / 255.0
    outside = 1.0 if params.dark_digit else 0.0
    scene = np.full((image.shape[0] + 2 * pad, image.shape[1] + 2 * pad), outside)
    scene[pad:-pad, pad:-pad] = (1.0 - level if params.dark_digit else level) ** params.display_gamma
    scene = np.clip(outside + _gaussian_blur(scene - outside, params.blur_sigma_px), 0.0, 1.0)

    duration_us = 1000.0 * rng.uniform(*params.duration_ms)
    t_us = np.arange(0.0, duration_us + params.dt_us, params.dt_us)
    dx, dy = saccade_path(params, t_us / 1000.0)
    org_x = params.offset_x - pad + dx
    org_y = params.offset_y - pad + dy

    shape = (params.height, params.width)
    thr_on = np.maximum(params.threshold_on + params.threshold_mismatch * rng.standard_normal(shape), 0.02)
    thr_off = np.maximum(params.threshold_off + params.threshold_mismatch * rng.standard_normal(shape), 0.02)
    ref0 = rng.uniform(-0.9, 0.9, size=shape) * np.minimum(thr_on, thr_off)  # pixels start at random reset phases

    tau_us = 1000.0 * params.photoreceptor_tau_ms
    lp_gain = 1.0 - np.exp(-params.dt_us / tau_us) if tau_us > 0 else 1.0
    cap = params.width * params.height * (int(duration_us / max(params.refractory_us, params.dt_us)) + 2)
    bx, by = np.empty(cap, np.int32), np.empty(cap, np.int32)
    bp, bt = np.empty(cap, np.uint8), np.empty(cap, np.float64)
    n = _pixel_events(scene, outside, org_x, org_y, t_us, thr_on, thr_off, ref0, float(params.refractory_us),
                      float(params.black_level), lp_gain, bx, by, bp, bt)
    nx, ny, npol, nt = _noise_events(params, duration_us, rng)

    t = np.concatenate([bt[:n], nt])
    t = np.rint(t + params.jitter_us * rng.standard_normal(t.shape))
    keep = (t >= 0) & (t < duration_us)
    ev = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    ev["x"] = np.concatenate([bx[:n], nx])[keep]
    ev["y"] = np.concatenate([by[:n], ny])[keep]
    ev["p"] = np.concatenate([bp[:n], npol])[keep]
    ev["t"] = t[keep].astype(np.int64)
    return ev[np.argsort(ev["t"], kind="stable")]
