"""An independent Newton-Schulz, written the seed's way (one matrix at a time, Y ← ½Y(3I − YᵀY)),
against which the tests check ``lrdlib.core.newton_schulz`` and the decays and optimisers built on it."""
import torch


def ns_reference(W: torch.Tensor, steps: int = 5, poly: str = "cubic") -> torch.Tensor:
    eps = {"cubic": 1e-8, "quintic": 1e-7}[poly]
    X = W / (torch.linalg.norm(W) + eps)
    I = torch.eye(X.shape[1], dtype=X.dtype)
    for _ in range(steps):
        if poly == "cubic":
            X = 0.5 * X @ (3.0 * I - X.T @ X)
        else:
            G = X.T @ X
            X = X @ (3.4445 * I - 4.7750 * G + 2.0315 * G @ G)
    return X
