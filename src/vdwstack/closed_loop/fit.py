"""Fits of one reading to the crop: pose (rotation, scale), optics (defocus, source size), the
twist's layer translation, and the local refinement of the reading itself (Nelder–Mead)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from vdwstack.closed_loop.comparator import Comparator
from vdwstack.closed_loop.stacking import Match, Pose, Stacking
from vdwstack.closed_loop.uncertainty import (
    design_matrix,
    pose_for_theta,
    reading_parameters,
)
from vdwstack.structures.geometry import slip_keys
from vdwstack.structures.symmetry import symmetry_for


def _nelder_mead(fun, x0: np.ndarray, steps: np.ndarray, maxfev: int, xatol: float = 1e-3) -> tuple[np.ndarray, float]:
    x0 = np.asarray(x0, float)
    simplex = np.vstack([x0, x0 + np.diag(steps)])
    res = minimize(fun, x0, method="Nelder-Mead",
                   options={"initial_simplex": simplex, "maxfev": int(maxfev), "xatol": xatol, "fatol": 1e-5})
    return np.asarray(res.x, float), float(res.fun)


def fit_source(comp: Comparator, stacking: Stacking, pose: Pose) -> Match:
    """Best source size (FWHM, Å) within the configured range: only a Fourier-space blur changes."""
    lo, hi = comp.settings.source_fwhm_range_A
    res = minimize_scalar(lambda f: -comp.evaluate(stacking, replace(pose, source_fwhm_A=float(f))).agreement,
                          bounds=(lo, hi), method="bounded", options={"xatol": 0.02})
    return comp.evaluate(stacking, replace(pose, source_fwhm_A=float(res.x)))


def fit_optics(comp: Comparator, stacking: Stacking, pose: Pose) -> Match:
    """Defocus over the configured values, source size continuous."""
    best = None
    for df in comp.settings.defocus_A:
        m = fit_source(comp, stacking, replace(pose, defocus_A=float(df)))
        if best is None or m.agreement > best.agreement:
            best = m
    return best


def fit_rotation_scale(comp: Comparator, stacking: Stacking, pose: Pose, maxfev: int,
                       step_deg: float = 0.5, step_scale: float = 0.01) -> Match:
    """Local Nelder–Mead over (rotation, scale), translation re-fitted at every step."""
    def f(x):
        return -comp.evaluate(stacking, replace(pose, rotation_deg=float(x[0]), scale=float(x[1]))).agreement

    x, _ = _nelder_mead(f, [pose.rotation_deg, pose.scale], np.array([step_deg, step_scale]), maxfev, 1e-4)
    return comp.evaluate(stacking, replace(pose, rotation_deg=float(x[0]), scale=float(x[1])))


def twist_nuisance_grid(material: str, theta_deg: float, n: int = 4) -> list[tuple[float, float]]:
    """Relative layer translations (Da, Db in Å) on an n×n grid of layer 2's (twisted) cell: with the
    global translation (searched over layer 1's cell) they cover every registry of the two layers."""
    sym = symmetry_for(material)
    t = np.deg2rad(theta_deg)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    lat2 = sym.lattice @ R.T
    out = []
    for i in range(n):
        for j in range(n):
            da, db = sym.cartesian_to_slip(np.array([i / n, j / n]) @ lat2)
            out.append((float(da), float(db)))
    return out


def fit_layer_translation(comp: Comparator, stacking: Stacking, pose: Pose, maxfev: int) -> Match:
    """Twists: Nelder–Mead on the layers' relative translation (Da, Db), θ and pose fixed."""
    def f(x):
        return -comp.evaluate(replace(stacking, Da_A=float(x[0]), Db_A=float(x[1])), pose).agreement

    x, _ = _nelder_mead(f, [stacking.Da_A, stacking.Db_A], np.array([0.3, 0.3]), maxfev, 5e-3)
    return comp.evaluate(replace(stacking, Da_A=float(x[0]), Db_A=float(x[1])), pose)


def best_on_nuisance_grid(comp: Comparator, stacking: Stacking, theta_deg: float, pose: Pose) -> Match:
    """Twists: the best of the layers' relative translations on :func:`twist_nuisance_grid` for the
    twist `theta_deg` in `pose` (the start of :func:`fit_layer_translation`)."""
    best = None
    for da, db in twist_nuisance_grid(comp.material, theta_deg):
        m = comp.evaluate(replace(stacking, theta_deg=theta_deg, Da_A=da, Db_A=db), pose)
        if best is None or m.agreement > best.agreement:
            best = m
    return best


def refine_stacking(comp: Comparator, match: Match, twist: bool = False, step_A: float = 0.2,
                    step_deg: float = 0.3) -> Match:
    """Nelder–Mead on the reading (slips; or θ and the layers' translation) from a fitted match,
    pose fixed (for twists layer 1 stays in place: :func:`pose_for_theta`). Never returns a worse
    match than `match`."""
    s0, pose = match.stacking, match.pose
    if twist:
        names = ["theta_deg", "Da_A", "Db_A"]
        steps = np.array([step_deg, step_A, step_A])
    else:
        names = list(slip_keys(comp.layers))
        steps = np.full(len(names), step_A)
    x0 = np.array([getattr(s0, k) for k in names])

    def stack(x) -> Stacking:
        return replace(s0, **dict(zip(names, map(float, x))))

    def pose_for(s: Stacking) -> Pose:
        # Layer 1 kept where it was: only layer 2 is rendered again.
        return pose_for_theta(pose, s0.theta_deg, s.theta_deg) if twist else pose

    def f(x):
        s = stack(x)
        return -comp.evaluate(s, pose_for(s)).agreement

    x, _ = _nelder_mead(f, x0, steps, comp.settings.max_evaluations, 2e-3)
    s = stack(x)
    m = comp.evaluate(s, pose_for(s))
    return m if m.agreement >= match.agreement else match


def gauss_newton(comp: Comparator, match: Match, twist: bool = False, iterations: int = 8,
                 pose_params: tuple[str, ...] = ()) -> Match:
    """Local refinement of the reading, the crop's translation and the pose's `pose_params`
    (rotation_deg, scale, strain_aniso, strain_shear) by Gauss–Newton on crop ≈ a·sim + b (optics
    fixed): smooth and fast where Nelder–Mead on the agreement stalls on the translation's
    sub-pixel steps. Steps are capped (0.15 Å, 0.3°, 1 px, 1 %, 3 Å of astigmatism), strains kept
    within ±5 % and astigmatism within ±20 Å, and a
    step is halved when it does not raise the agreement. Never returns a worse match."""
    names, _ = reading_parameters(twist, comp.layers)
    k, q = len(names), len(pose_params)
    cap = np.array([0.3 if n == "theta_deg" else 0.15 for n in names]
                   + [_POSE_CAPS.get(n, 0.01) for n in pose_params] + [1.0, 1.0])
    s, pose, t = match.stacking, match.pose, tuple(match.translation_px)
    best = comp.agreement_of(comp.window_at(s, pose, t))
    for _ in range(iterations):
        X, w0, a, b = design_matrix(comp, s, pose, t, twist, pose_params)
        delta = np.linalg.lstsq(X, comp.target.ravel() - a * w0.ravel() - b, rcond=None)[0][:k + q + 2]
        delta *= min(1.0, float(np.min(cap / np.maximum(np.abs(delta), 1e-12))))
        for step in (1.0, 0.5, 0.25):
            d = delta * step
            s_new = replace(s, **{n: getattr(s, n) + float(d[i]) for i, n in enumerate(names)})
            p_new = pose_for_theta(pose, s.theta_deg, s_new.theta_deg) if twist else pose
            p_new = replace(p_new, **{n: _bounded(n, getattr(p_new, n) + float(d[k + i]))
                                      for i, n in enumerate(pose_params)})
            t_new = (t[0] + float(d[k + q]), t[1] + float(d[k + q + 1]))
            r = comp.agreement_of(comp.window_at(s_new, p_new, t_new))
            if r > best:
                break
        else:
            break
        s, pose, t, best = s_new, p_new, t_new, r
        if np.max(np.abs(d) / cap) < 2e-3:  # every parameter (reading, pose, translation) has settled
            break
    if best <= match.agreement:
        return match
    return Match(best, s, pose, t)


# The largest Gauss–Newton step of each pose parameter (others: 0.01, i.e. 1 % of scale or strain).
_POSE_CAPS = {"rotation_deg": 0.3, "astig_x_A": 3.0, "astig_y_A": 3.0, "defocus_A": 10.0}


def _bounded(name: str, value: float) -> float:
    """Strains within ±5 %, astigmatism components within ±20 Å."""
    if name.startswith("strain"):
        return float(np.clip(value, -0.05, 0.05))
    if name.startswith("astig"):
        return float(np.clip(value, -20.0, 20.0))
    return value
