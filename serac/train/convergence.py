"""Whether a training had converged, judged from the validation losses of its last epochs (the encoder
comparison's table flags a claim about a model that had not)."""
from __future__ import annotations

from typing import Any, Dict, Sequence

CONVERGENCE_EPOCHS = 3  # the validation loss of the last this many epochs judges convergence


def convergence(valid_losses: Sequence[float], epoch: int, converged_pct: float) -> Dict[str, Any]:
    """Whether a training had converged, from the validation losses of its last epochs (oldest first, at most
    CONVERGENCE_EPOCHS): {losses, change (percent, epoch E-2 to E; None with fewer epochs), status, converged}."""
    losses = list(valid_losses)[-CONVERGENCE_EPOCHS:]
    if len(losses) < CONVERGENCE_EPOCHS:
        return {"losses": losses, "change": None, "converged": False,
                "status": f"not judged ({epoch} epoch(s), fewer than {CONVERGENCE_EPOCHS})"}
    change = 100.0 * (losses[-1] / losses[0] - 1.0)
    if abs(change) < converged_pct:
        status = "converged"
    else:
        status = "still improving" if change < 0 else "rising"
    return {"losses": losses, "change": change, "converged": status == "converged", "status": status}
