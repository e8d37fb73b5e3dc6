"""The fast network's frozen first layer, in numpy alone (airbench's patch whitening).

Kept free of Keras so that the GPU recipe sweep (docs/experiments/gpu_sweep.py,
PyTorch only) computes exactly the same filters as `cnn.models`.
"""

from __future__ import annotations

import numpy as np

# CIFAR-10 training-set channel statistics of x/255 (shared PROVENANCE.md, 8 digits).
CIFAR_MEAN = (0.49139968, 0.48215841, 0.44653091)
CIFAR_STD = (0.24703223, 0.24348513, 0.26158784)
WHITEN_KERNEL = 2  # airbench: 2x2 patches -> 2 * 12 = 24 whitening filters


def whitening_filters(images: np.ndarray | None, eps: float = 5e-4) -> np.ndarray:
    """Filters (2, 2, 3, 24) that whiten 2x2 patches of normalized images (airbench).

    The eigenvectors of the patch covariance, scaled by 1/sqrt(eigenvalue),
    in both signs. With no images, an orthonormal stand-in (weights get loaded later).
    """
    size = WHITEN_KERNEL * WHITEN_KERNEL * 3
    if images is None:
        basis = np.eye(size, dtype=np.float32)
    else:
        normalized = (images.astype(np.float32) / 255.0 - CIFAR_MEAN) / CIFAR_STD
        windows = np.lib.stride_tricks.sliding_window_view(normalized, (WHITEN_KERNEL, WHITEN_KERNEL), axis=(1, 2))
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size)  # (h, w, c) order = Keras kernel order
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        basis = (eigenvectors / np.sqrt(eigenvalues + eps)).T.astype(np.float32)
    filters = np.concatenate([basis, -basis]).T  # (12, 24)
    return filters.reshape(WHITEN_KERNEL, WHITEN_KERNEL, 3, 2 * size)
