"""Stacking domains of a sliding-window map: clusters of similar readings, spatially connected,
and the windows on their boundaries."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.ndimage import label as connected_components


def segment_domains(values: Mapping[str, np.ndarray], distance, tol: float, min_windows: int
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Label map (−1 = unassigned) of the windows and the member mask of each cluster.

    Windows are clustered by value (greedy: the window with the most neighbours within `tol`
    seeds a cluster of those neighbours), then split into spatially connected domains; domains
    with fewer than `min_windows` windows stay unassigned.
    """
    shape = next(iter(values.values())).shape
    flat = {k: v.ravel() for k, v in values.items()}
    n = int(np.prod(shape))
    pair = np.stack([distance({k: v[i:i + 1] for k, v in flat.items()}, flat) for i in range(n)])
    near = pair <= tol
    free = np.ones(n, bool)
    cluster = np.full(n, -1)
    c = 0
    while free.any():
        counts = (near & free[None]).sum(axis=1) * free
        seed = int(np.argmax(counts))
        members = near[seed] & free
        cluster[members] = c
        free &= ~members
        c += 1
    labels = np.full(shape, -1)
    next_id = 0
    masks = []
    for k in range(c):
        comp, m = connected_components((cluster == k).reshape(shape))
        for j in range(1, m + 1):
            mask = comp == j
            if mask.sum() >= min_windows:
                labels[mask] = next_id
                masks.append(mask)
                next_id += 1
    return labels, masks


def domain_boundaries(labels: np.ndarray) -> np.ndarray:
    """Boolean map: windows whose right or lower neighbour belongs to another domain."""
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b
