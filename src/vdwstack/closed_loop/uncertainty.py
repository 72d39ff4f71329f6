"""The 95 % interval of a fitted reading: the agreement surface's curvature scaled by the residual.

At the fit, crop ≈ a·sim(p) + b + noise. Linearising the simulation in the reading p (slips, or θ
with the layers' translation as a nuisance), in the crop's translation and in (a, b) gives the
Gauss–Newton covariance σ²·c·(XᵀX)⁻¹, X the Jacobian of the band-passed simulation, σ² the
residual variance and c the number of pixels per independent noise sample (the band-pass
low-pass of σ_lp px correlates white noise over 4π·σ_lp² px). The translation and (a, b) are
marginalised (their rows are solved for, not fixed). This statistical part misses what the model
gets wrong in a systematic way (aberrations, drift, contamination), so the stated interval is
calibrated once against images with known truth made differently from the training data:

    Σ = k²·Σ_fit + f²·1,

k = ``interval_scale_slip`` / ``interval_scale_twist`` (``interval_scale_twist_aligned`` for a twist
read near an aligned stacking: there the alignment rests on the contrast, and the fit's statistics
understate the error) and f = ``interval_floor_A`` / ``interval_floor_deg`` of
:class:`ClosedLoopSettings`, re-measured by ``benchmarks/final_readings.py --calibrate``. The
interval is the 95 % quantile of the error that Σ implies: of |ΔD| (Cartesian Å) for a slip, of
max(|ΔD1|, |ΔD2|) for a trilayer's two slips, of |Δθ| for a twist.

The Jacobian is taken by central differences: slips move whole layers (Fourier shifts, no new
render), θ re-renders layer 2 twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.closed_loop.stacking import Match, Pose, Stacking
from vdwstack.structures.geometry import slip_keys
from vdwstack.structures.symmetry import symmetry_for

_Z = np.random.default_rng(20250101).standard_normal((20000, 4))  # fixed draws: deterministic quantiles


@dataclass(frozen=True)
class Interval:
    """Calibrated 95 % interval of a reading.

    radius: the interval (Å radius for slips, degrees half-width for θ).
    sigma: the fit's statistical standard errors of the reading's parameters before calibration
        (Å or degrees), by name.
    residual: rms of (band-passed crop − fitted simulation), in units of the crop's rms.
    covariance: the fit's statistical covariance of the parameters (order of `sigma`), uncalibrated.
    """

    radius: float
    sigma: dict[str, float]
    residual: float
    covariance: list[list[float]]


def reading_parameters(twist: bool, layers: int) -> tuple[list[str], list[float]]:
    """Names of a reading's fitted parameters and their finite-difference steps (Å, degrees)."""
    if twist:
        return ["theta_deg", "Da_A", "Db_A"], [0.05, 0.02, 0.02]
    names = list(slip_keys(layers))
    return names, [0.02] * len(names)


def pose_for_theta(pose: Pose, base_theta: float, theta: float) -> Pose:
    """The pose for another θ with layer 1 kept in place (the pose holds the layers' mean orientation)."""
    return replace(pose, rotation_deg=pose.rotation_deg + (theta - base_theta) / 2)


#: Finite-difference steps of the pose's parameters (degrees; dimensionless).
POSE_STEPS = {"rotation_deg": 0.05, "scale": 0.002, "strain_aniso": 0.002, "strain_shear": 0.002,
              "astig_x_A": 0.5, "astig_y_A": 0.5, "defocus_A": 2.0}


def design_matrix(comp: Comparator, stacking: Stacking, pose: Pose, translation_px: tuple[float, float],
                  twist: bool, pose_params: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Linearisation of crop ≈ a·sim + b at a fit: (X, simulated window w0 (n×n), a, b), X's columns
    the derivatives a·∂w/∂p of the reading's parameters (:func:`reading_parameters`), then of the
    pose's `pose_params` (:data:`POSE_STEPS`; each a new render), then a·∂w/∂t of the translation
    (row, col px), then w0 and 1 (intensity scale and offset)."""
    names, steps = reading_parameters(twist, comp.layers)
    w0 = comp.window_at(stacking, pose, translation_px)
    A = np.column_stack([w0.ravel(), np.ones(w0.size)])
    (a, b), *_ = np.linalg.lstsq(A, comp.target.ravel(), rcond=None)
    cols = []
    for name, h in zip(names, steps):
        v = getattr(stacking, name)
        sp, sm = replace(stacking, **{name: v + h}), replace(stacking, **{name: v - h})
        pp, pm = (pose_for_theta(pose, v, v + h), pose_for_theta(pose, v, v - h)) if name == "theta_deg" \
            else (pose, pose)
        cols.append(a * (comp.window_at(sp, pp, translation_px) - comp.window_at(sm, pm, translation_px)).ravel()
                    / (2 * h))
    for name in pose_params:
        h, v = POSE_STEPS[name], getattr(pose, name)
        wp = comp.window_at(stacking, replace(pose, **{name: v + h}), translation_px)
        wm = comp.window_at(stacking, replace(pose, **{name: v - h}), translation_px)
        cols.append(a * (wp - wm).ravel() / (2 * h))
    tr = translation_px
    for d in ((0.5, 0.0), (0.0, 0.5)):
        wp = comp.window_at(stacking, pose, (tr[0] + d[0], tr[1] + d[1]))
        wm = comp.window_at(stacking, pose, (tr[0] - d[0], tr[1] - d[1]))
        cols.append(a * (wp - wm).ravel())
    X = np.column_stack(cols + [w0.ravel(), np.ones(w0.size)])
    return X, w0, float(a), float(b)


def fit_covariance(comp: Comparator, match: Match, twist: bool, pose_params: tuple[str, ...] = ()
                   ) -> tuple[list[str], np.ndarray, float]:
    """(parameter names, statistical covariance of the reading's parameters — Å², degrees² —, relative
    residual rms) at a fitted match, translation, intensity and `pose_params` marginalised."""
    names, _ = reading_parameters(twist, comp.layers)
    X, w0, a, b = design_matrix(comp, match.stacking, match.pose, match.translation_px, twist, pose_params)
    t = comp.target
    res = t.ravel() - a * w0.ravel() - b
    dof = max(res.size - X.shape[1], 1)
    sigma2 = float(res @ res) / dof
    corr_px = 4 * np.pi * (comp.settings.denoise_A / comp.crop.pixel_size_A) ** 2
    cov = sigma2 * max(corr_px, 1.0) * np.linalg.pinv(X.T @ X)
    k = len(names)
    return names, cov[:k, :k], float(np.sqrt(np.mean(res ** 2)) / max(np.sqrt(np.mean(t ** 2)), 1e-30))


def interval_radius(material: str, twist: bool, names: list[str], cov: np.ndarray, scale: float,
                    floor: float) -> float:
    """The 95 % interval implied by Σ = scale²·Σ_fit + floor²·1 (see the module docstring): of |Δθ|
    (degrees), of |ΔD| (Cartesian Å), of max(|ΔD1|, |ΔD2|) for a trilayer."""
    if twist:
        return float(1.959964 * np.hypot(scale * np.sqrt(max(cov[0, 0], 0.0)), floor))
    # Slip parameters (Da, Db along the unit cell vectors) → Cartesian Å, layer by layer.
    B = symmetry_for(material).material.unit_vectors.T  # columns â, b̂
    n_slips = len(names) // 2
    T = np.kron(np.eye(n_slips), B)
    cart = scale ** 2 * (T @ cov @ T.T) + floor ** 2 * np.eye(2 * n_slips)
    L = np.linalg.cholesky(cart + 1e-18 * np.eye(2 * n_slips))
    e = _Z[:, :2 * n_slips] @ L.T
    err = np.max(np.linalg.norm(e.reshape(len(e), n_slips, 2), axis=-1), axis=1)
    return float(np.quantile(err, 0.95))


def fitted_pose_params(settings: ClosedLoopSettings) -> tuple[str, ...]:
    """The pose parameters the final fit refines with the reading (and marginalises in the interval)."""
    return (("rotation_deg", "scale") + (("strain_aniso", "strain_shear") if settings.fit_distortion else ())
            + (("astig_x_A", "astig_y_A", "defocus_A") if settings.fit_astigmatism else ()))


def interval_scale(s: ClosedLoopSettings, material: str, theta_deg: float | None) -> float:
    """The calibration factor k of a reading: of a slip (`theta_deg` None), of a twist, or of a twist
    read within ``aligned_twist_warning_deg`` of an aligned stacking, where the alignment rests on the
    simulation's contrast and the fit's own error understates the reading's (calibrated apart)."""
    if theta_deg is None:
        return s.interval_scale_slip
    if symmetry_for(material).near_aligned_twist(theta_deg, s.aligned_twist_warning_deg):
        return s.interval_scale_twist_aligned
    return s.interval_scale_twist


def reading_interval(comp: Comparator, match: Match, twist: bool,
                     settings: ClosedLoopSettings | None = None) -> Interval:
    """The calibrated 95 % interval of a fitted match (see the module docstring)."""
    s = settings or comp.settings
    names, cov, resid = fit_covariance(comp, match, twist, fitted_pose_params(s))
    sigma = {n: float(np.sqrt(max(cov[i, i], 0.0))) for i, n in enumerate(names)}
    floor = s.interval_floor_deg if twist else s.interval_floor_A
    scale = interval_scale(s, comp.material, match.stacking.theta_deg if twist else None)
    radius = interval_radius(comp.material, twist, names, cov, scale, floor)
    return Interval(radius, sigma, resid, cov.tolist())
