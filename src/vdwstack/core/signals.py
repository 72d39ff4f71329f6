"""Choosing the signal to read from a file that holds several (a Velox EMD with HAADF, DF4 and BF;
an .hspy or Berkeley EMD with several groups): by title, or the one the user names.

The automatic choice is the 2-D image whose title contains 'HAADF', else one whose title contains
'ADF' or 'DF' but not 'BF' (case-insensitive, first in file order); a file with a single image
gives it whatever its title; several untitled images (TIFF series) give the first. ``signal=``
names one: a title (case-insensitive exact match) or the index, as a string, of the signal among
those the reader returns (counting from 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def signal_title(sig: dict) -> str | None:
    title = ((sig.get("metadata") or {}).get("General") or {}).get("title")
    if isinstance(title, bytes):
        title = title.decode("utf-8", "replace")
    return str(title) if title not in (None, "") else None


def as_image(data) -> np.ndarray | None:
    """A signal's data as a 2-D (or RGB [H, W, 3|4]) array; None when it is no single image
    (a stack, a spectrum)."""
    data = np.asarray(data)
    if data.dtype.names:  # rosettasciio's structured RGB(A)
        data = np.stack([data[n] for n in data.dtype.names], axis=-1)
        return data if data.ndim == 3 else None
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    return data if data.ndim == 2 else None


def _rank(title: str | None) -> int:
    """Preference of an automatic choice: 2 HAADF, 1 ADF/DF (not BF), 0 otherwise."""
    t = (title or "").upper()
    if "HAADF" in t:
        return 2
    if ("ADF" in t or "DF" in t) and "BF" not in t:
        return 1
    return 0


def _describe(signals: list[dict], indices: list[int] | None = None) -> str:
    """'index: title' of the signals (all, or those at `indices`)."""
    indices = range(len(signals)) if indices is None else indices
    return ", ".join(f"{i}: {signal_title(signals[i])!r}" for i in indices)


def choose_signal(path: str | Path, signals: list[dict], signal: str | None = None) -> int:
    """Index of the signal to read among rosettasciio's `signals` (dicts with 'data', 'metadata').

    signal: a title (case-insensitive exact match) or an index as a string; None chooses
    automatically (see the module docstring). Raises ValueError naming the file and listing the
    available titles when the name matches none, the chosen signal is no 2-D image, or several
    images leave the choice open.
    """
    images = [i for i, s in enumerate(signals) if as_image(s["data"]) is not None]
    if signal is not None and str(signal).strip() != "":
        want = str(signal).strip()
        hits = [i for i, s in enumerate(signals) if (signal_title(s) or "").strip().casefold() == want.casefold()]
        if not hits and want.isdigit() and int(want) < len(signals):
            hits = [int(want)]
        if not hits:
            raise ValueError(f"{path}: no signal {want!r} in the file; it holds {len(signals)}: "
                             f"{_describe(signals)} (name one by title or index)")
        hits_2d = [i for i in hits if i in images]
        if not hits_2d:
            raise ValueError(f"{path}: signal {want!r} is not a 2-D image (shape "
                             f"{np.shape(signals[hits[0]]['data'])}); images: {_describe(signals, images) or 'none'}")
        return hits_2d[0]
    if not images:
        raise ValueError(f"{path}: no 2-D image in the file (signals: {_describe(signals) or 'none'})")
    if len(images) == 1:
        return images[0]
    best = max(_rank(signal_title(signals[i])) for i in images)
    if best > 0:
        return next(i for i in images if _rank(signal_title(signals[i])) == best)
    if all(signal_title(signals[i]) is None for i in images):
        return images[0]  # untitled series (TIFF pages): the first is the main image
    raise ValueError(f"{path}: {len(images)} images and none titled HAADF/ADF/DF: name one with signal= (the sample "
                     f"sheet's `signal` column): {_describe(signals)}")
