"""Simulated models of one material scored against one crop (FFT cross-correlation, cached renders).

The incoherent image is linear in the atoms: each layer can be rendered alone and moved by a
Fourier phase shift, which makes the global scans cheap."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import scipy.fft
from scipy.ndimage import gaussian_filter

from vdwstack.closed_loop.crop import Crop
from vdwstack.closed_loop.settings import ClosedLoopSettings
from vdwstack.closed_loop.stacking import Match, Pose, Stacking, lattice_to_image
from vdwstack.core.microscope import Optics, fixed_microscope
from vdwstack.simulate.incoherent import job_from_atoms, padding_px, render_incoherent
from vdwstack.structures.geometry import StackGeometry, build_stack, layer_heights_A
from vdwstack.structures.materials import get_material
from vdwstack.structures.symmetry import symmetry_for

_FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


class Comparator:
    """Simulates stackings of one material on a canvas one unit cell larger than a crop and scores
    them against it. Renders are cached by (stacking, rotation, scale, defocus)."""

    def __init__(self, crop: Crop, material: str, layers: int, settings: ClosedLoopSettings,
                 microscope: Mapping | None = None):
        self.crop, self.material, self.layers, self.settings = crop, material, int(layers), settings
        if self.layers not in (2, 3):
            raise ValueError(f"closed-loop check supports bilayers and trilayers, got layers={layers}")
        # The configured microscope (ranges: their midpoint); defocus and source size are fitted.
        self.microscope = fixed_microscope(microscope)
        pw = crop.pixel_size_A
        self.n = crop.raw.shape[0]
        lat = get_material(material).lattice_2d
        # The crop matches the periodic model at some translation inside the Wigner–Seitz cell, whose
        # radius is below max(|a|, |b|): search that far, plus 5 px for the sub-pixel interpolation.
        reach_A = float(np.max(np.linalg.norm(lat, axis=1)))
        # Slips are applied as Fourier shifts of the layers (:meth:`stack_fft`), which wrap a strip
        # as wide as the shift round the canvas: the guard keeps that strip out of every window.
        # Shifts are reduced modulo the layers' lattices and centred, so each is below 0.6·reach.
        self.guard = int(np.ceil(0.6 * reach_A / pw)) + 4
        self.margin = int(np.ceil(reach_A / pw)) + 5 + self.guard
        self.N = scipy.fft.next_fast_len(self.n + 2 * self.margin, real=True)
        self.target = self._bandpass_crop(crop.raw)
        Tp = np.zeros((self.N, self.N))
        Tp[:self.n, :self.n] = self.target
        self._T_conj = np.conj(scipy.fft.rfft2(Tp))
        self._ky = np.fft.fftfreq(self.N)[:, None]
        self._kx = np.fft.rfftfreq(self.N)[None, :]
        self._k2 = self._kx ** 2 + self._ky ** 2
        # rfft2 keeps half the spectrum: the other half's columns count twice in Parseval's sum.
        self._rfft_weight = np.full(self.N // 2 + 1, 2.0)
        self._rfft_weight[0] = 1.0
        if self.N % 2 == 0:
            self._rfft_weight[-1] = 1.0
        self._offset_maps: dict = {}
        self._cache: OrderedDict = OrderedDict()
        self.evaluations = 0

    # band-pass: background removed from the crop; the same low-pass on crop and simulation
    def _bandpass_crop(self, raw: np.ndarray) -> np.ndarray:
        pw = self.crop.pixel_size_A
        x = raw - gaussian_filter(raw, self.settings.background_A / pw, mode="reflect")
        x = gaussian_filter(x, self.settings.denoise_A / pw, mode="reflect")
        x = x - x.mean()
        norm = np.linalg.norm(x)
        if norm == 0:
            raise ValueError("the crop is constant after background removal")
        return x / norm

    def render_fft(self, stacking: Stacking, rotation_deg: float, scale: float, defocus_A: float,
                   layer: int | None = None, strain: tuple[float, float] = (0.0, 0.0),
                   astig_A: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """rfft2 of the canvas simulated without source blur (the blur is applied in Fourier space).

        layer: only this layer's atoms (1-based; the image of the stack is the sum of its layers'
        images, the incoherent model being linear in the atoms); None: the whole stack.
        strain: the scan distortion (:class:`Pose`: strain_aniso, strain_shear).
        astig_A: two-fold astigmatism, Cartesian components (:class:`Pose`: astig_x_A, astig_y_A).
        """
        if layer == 1:
            # Layer 1 depends neither on the slips nor on θ (it sits at the pose's rotation − θ/2).
            rotation_deg, stacking = rotation_deg - stacking.theta_deg / 2, Stacking()
        key = (tuple(np.round(list(stacking.as_dict().values()), 6)), round(rotation_deg, 6), round(scale, 8),
               round(defocus_A, 4), layer, round(strain[0], 7), round(strain[1], 7), round(astig_A[0], 4),
               round(astig_A[1], 4))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # The scale enters as an isotropic strain of the model at the nominal pixel size: the probe
        # (cached per pixel size) is then reused; a ~1 % error in its size is immaterial.
        ps = self.crop.pixel_size_A
        N = self.N
        row = {**self.microscope, "defocus_A": defocus_A, "source_fwhm_A": 0.0}
        c12 = float(np.hypot(*astig_A))
        if c12 > 0:  # abTEM's C12 (Å) and phi12 (rad)
            row["aberrations"] = {"C12": c12, "phi12": float(np.arctan2(astig_A[1], astig_A[0]) / 2)}
        optics = Optics.from_mapping(row)
        geom = StackGeometry(material=self.material, layers=self.layers, theta_deg=stacking.theta_deg,
                             Da_A=stacking.Da_A, Db_A=stacking.Db_A,
                             Da2_A=stacking.Da2_A if self.layers == 3 else 0.0,
                             Db2_A=stacking.Db2_A if self.layers == 3 else 0.0,
                             strain_xx=1.0 / scale - 1.0 + strain[0], strain_yy=1.0 / scale - 1.0 - strain[0],
                             strain_xy=strain[1],
                             # The pose's rotation is the layers' mean orientation: a change of θ then
                             # turns both layers by ∓θ/2 and barely couples to the rotation.
                             rotation_deg=rotation_deg - stacking.theta_deg / 2,
                             origin_x_A=N * ps / 2, origin_y_A=N * ps / 2)
        heights = layer_heights_A(geom)
        m = (padding_px(optics, ps, heights) + 8) * ps
        atoms = build_stack(geom, (-m, N * ps + m, -m, N * ps + m))
        if layer is not None:
            atoms = atoms[atoms.get_tags() == layer]
        img = render_incoherent([job_from_atoms(atoms, optics, self.material, heights)], ps, (N, N), True,
                                quiet=True)[0]
        F = scipy.fft.rfft2(img.astype(np.float64))
        self.evaluations += 1
        self._cache[key] = F
        if len(self._cache) > 64:
            self._cache.popitem(last=False)
        return F

    def _blurred(self, F: np.ndarray, scale: float, source_fwhm_A: float, denoise: bool) -> np.ndarray:
        ps = self.crop.pixel_size_A * scale
        s_src_px = source_fwhm_A / _FWHM_PER_SIGMA / ps
        s_lp_px = self.settings.denoise_A / self.crop.pixel_size_A if denoise else 0.0
        g = np.exp(-2 * np.pi ** 2 * (s_src_px ** 2 + s_lp_px ** 2) * self._k2)
        return F * g

    def shifted(self, F: np.ndarray, d_row: float, d_col: float) -> np.ndarray:
        """Spectrum of the canvas whose content is moved by (d_row, d_col) pixels (periodic)."""
        # Separable phase ramps: two short exp() vectors instead of one over the whole spectrum.
        return F * np.exp(-2j * np.pi * self._ky * d_row) * np.exp(-2j * np.pi * self._kx * d_col)

    def image_shift_to_slip(self, d_row: float, d_col: float, pose: Pose, theta_deg: float = 0.0
                            ) -> tuple[float, float]:
        """The change of (Da, Db) in Å that moves layer 2 by (d_row, d_col) canvas pixels (inverse
        of the geometry's lattice→image map: rotation pose.rotation − θ/2, strain 1/scale − 1)."""
        ps = self.crop.pixel_size_A
        d = np.linalg.solve(lattice_to_image(pose, theta_deg), np.array([d_col * ps, d_row * ps]))
        da, db = symmetry_for(self.material).cartesian_to_slip(d)
        return float(da), float(db)

    def score_fft(self, F: np.ndarray, pose: Pose) -> float:
        """Quick agreement of a canvas spectrum for scans: the best correlation over whole-pixel
        translations, each window's variance taken as the canvas's (Parseval; the model is periodic
        and the window holds many cells, so they differ by ~1 %). Slightly below
        :meth:`evaluate_fft`'s exact, sub-pixel agreement."""
        Fs = self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=True)
        N, n, g = self.N, self.n, self.guard
        C = scipy.fft.irfft2(Fs * self._T_conj, s=(N, N))
        nv = N - n + 1
        power = (np.abs(Fs) ** 2 * self._rfft_weight).sum() / N ** 2
        var_px = power / N ** 2 - (Fs[0, 0].real / N ** 2) ** 2
        return float(C[g:nv - g, g:nv - g].max() / np.sqrt(max(var_px, 1e-30) * n * n))

    def best_translation(self, F: np.ndarray, pose: Pose) -> tuple[float, float]:
        """(row, col) of the crop's corner in the canvas (sub-pixel) that correlates best with F."""
        r, c, dr, dc = self._peak(self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=True))
        return r + dr, c + dc

    def _ncc(self, Fs: np.ndarray) -> np.ndarray:
        """Pearson r of the crop with the canvas window at every whole-pixel translation."""
        S = scipy.fft.irfft2(Fs, s=(self.N, self.N))
        n, N = self.n, self.N
        C = scipy.fft.irfft2(Fs * self._T_conj, s=(N, N))
        nv = N - n + 1
        ii = np.zeros((N + 1, N + 1))
        ii[1:, 1:] = np.cumsum(np.cumsum(S, 0), 1)
        ii2 = np.zeros((N + 1, N + 1))
        ii2[1:, 1:] = np.cumsum(np.cumsum(S * S, 0), 1)

        def wsum(a):
            return a[n:n + nv, n:n + nv] - a[:nv, n:n + nv] - a[n:n + nv, :nv] + a[:nv, :nv]

        var = wsum(ii2) - wsum(ii) ** 2 / n ** 2
        return C[:nv, :nv] / np.sqrt(np.maximum(var, 1e-30))

    def _peak(self, Fs: np.ndarray) -> tuple[int, int, float, float]:
        """Best translation of the crop in the canvas: (row, col, sub-pixel d_row, d_col)."""
        ncc = self._ncc(Fs)
        nv = ncc.shape[0]
        lo, hi = self.guard, nv - 1 - self.guard  # room for the sub-pixel window, no wrapped strip
        sub = ncc[lo:hi + 1, lo:hi + 1]
        r, c = np.unravel_index(int(np.argmax(sub)), sub.shape)
        r, c = r + lo, c + lo

        def para(fm, f0, fp):
            d = fm - 2 * f0 + fp
            return float(np.clip(0.5 * (fm - fp) / d, -0.5, 0.5)) if d < 0 else 0.0

        dr = para(ncc[r - 1, c], ncc[r, c], ncc[r + 1, c])
        dc = para(ncc[r, c - 1], ncc[r, c], ncc[r, c + 1])
        return int(r), int(c), dr, dc

    def _window(self, Fs: np.ndarray, r: int, c: int, dr: float, dc: float) -> np.ndarray:
        """The canvas under the crop at the sub-pixel translation (a Fourier shift: exact for the
        band-limited canvas, and cheaper than a spline)."""
        n = self.n
        S = scipy.fft.irfft2(self.shifted(Fs, -dr, -dc), s=(self.N, self.N))
        return S[r:r + n, c:c + n]

    def _offset_map(self, pose: Pose, theta_deg: float) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(lattice→image map F, each layer's lattice in the image (columns), the 3×3 neighbour
        cells) for one pose and θ, cached: scans evaluate thousands of slips per pose."""
        key = (pose.rotation_deg, pose.scale, pose.strain, theta_deg)
        if key not in self._offset_maps:
            sym = symmetry_for(self.material)
            F = lattice_to_image(pose, theta_deg)
            t = np.deg2rad(theta_deg)
            Rt = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            Ls = [F @ (Rt if k == 1 else np.eye(2)) @ sym.lattice.T for k in range(self.layers)]
            nb = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], float)
            if len(self._offset_maps) > 256:
                self._offset_maps.clear()
            self._offset_maps[key] = (F, Ls, nb)
        return self._offset_maps[key]

    def layer_offsets_px(self, stacking: Stacking, pose: Pose) -> np.ndarray:
        """(row, col) canvas shift of each layer (shape layers×2) that turns the layers rendered at zero
        slip into the stack `stacking`: layer k sits at F·(D1 + … + D(k−1)) (F: the geometry's
        lattice→image map), each reduced modulo its own lattice and all centred (a common shift is
        the translation, fitted anyway), so that no shift exceeds the guard."""
        F, Ls, nb = self._offset_map(pose, stacking.theta_deg)
        u = symmetry_for(self.material).material.unit_vectors
        slips = [stacking.Da_A * u[0] + stacking.Db_A * u[1], stacking.Da2_A * u[0] + stacking.Db2_A * u[1]]
        offs, cum = np.zeros((self.layers, 2)), np.zeros(2)
        for k in range(self.layers):
            if k:
                cum = cum + slips[k - 1]
            off = F @ cum
            L = Ls[k]
            cands = off[None] - (np.round(np.linalg.solve(L, off))[None] + nb) @ L.T
            offs[k] = cands[int(np.argmin(np.einsum("ij,ij->i", cands, cands)))]
        offs -= offs.mean(axis=0)
        return offs[:, ::-1] / self.crop.pixel_size_A  # (x, y) Å → (row, col) px

    def layer_fft(self, stacking: Stacking, pose: Pose, layer: int) -> np.ndarray:
        """:meth:`render_fft` of one layer in `pose` (its rotation, scale, defocus, distortion and
        astigmatism)."""
        return self.render_fft(stacking, pose.rotation_deg, pose.scale, pose.defocus_A, layer=layer,
                               strain=pose.strain, astig_A=(pose.astig_x_A, pose.astig_y_A))

    def layer_spectra(self, stacking: Stacking, pose: Pose) -> list[np.ndarray]:
        """rfft2 of each layer alone at zero slip (cached; only layer 2 depends on θ)."""
        base = Stacking(theta_deg=stacking.theta_deg)
        return [self.layer_fft(base, pose, k) for k in range(1, self.layers + 1)]

    def stack_fft(self, stacking: Stacking, pose: Pose) -> np.ndarray:
        """Spectrum of the stack: its layers, rendered once per pose, moved by Fourier shifts (the
        incoherent image is linear in the atoms; a slip only moves whole layers)."""
        spectra = self.layer_spectra(stacking, pose)
        offs = self.layer_offsets_px(stacking, pose)
        return sum(self.shifted(F, d[0], d[1]) for F, d in zip(spectra, offs))

    def evaluate(self, stacking: Stacking, pose: Pose, keep_window: bool = False) -> Match:
        """Agreement of one model with the crop (translation fitted)."""
        return self.evaluate_fft(self.stack_fft(stacking, pose), stacking, pose, keep_window)

    def evaluate_fft(self, F: np.ndarray, stacking: Stacking, pose: Pose, keep_window: bool = False) -> Match:
        """Agreement of a canvas given by its spectrum (the model `stacking` it stands for)."""
        Fs = self._blurred(F, pose.scale, pose.source_fwhm_A, denoise=True)
        r, c, dr, dc = self._peak(Fs)
        w = self._window(Fs, r, c, dr, dc)
        w = w - w.mean()
        agreement = self.agreement_of(w)
        return Match(agreement, stacking, pose, (r + dr - self.margin, c + dc - self.margin),
                     w if keep_window else None)

    def agreement_of(self, window: np.ndarray) -> float:
        """Pearson r of a simulated window (n×n, band-passed) with the band-passed crop."""
        w = window - window.mean()
        nrm = np.linalg.norm(w)
        return float(np.sum(w * self.target) / nrm) if nrm > 0 else 0.0

    def window_at(self, stacking: Stacking, pose: Pose, translation_px: tuple[float, float],
                  denoise: bool = True) -> np.ndarray:
        """The simulation of `stacking` under the crop at a fixed translation (crop corner in the
        canvas, px, as in :attr:`Match.translation_px`), band-passed like the target (denoise) or
        with the source blur only."""
        Fs = self._blurred(self.stack_fft(stacking, pose), pose.scale, pose.source_fwhm_A, denoise=denoise)
        tr, tc = translation_px[0] + self.margin, translation_px[1] + self.margin
        r, c = int(np.floor(tr)), int(np.floor(tc))
        return self._window(Fs, r, c, tr - r, tc - c)

    def simulated_crop(self, match: Match) -> tuple[np.ndarray, float, float]:
        """Simulation under the crop with the source blur only, scaled to the crop's intensities:
        (a·sim + b, a, b) with (a, b) from least squares."""
        w = self.window_at(match.stacking, match.pose, match.translation_px, denoise=False)
        A = np.column_stack([w.ravel(), np.ones(w.size)])
        (a, b), *_ = np.linalg.lstsq(A, self.crop.raw.ravel(), rcond=None)
        return a * w + b, float(a), float(b)
