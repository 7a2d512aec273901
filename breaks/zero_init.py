"""zero_init: both linear layers' weights start at zero."""
from __future__ import annotations

from torch import nn

from breaklab.breaks.base import Break


class ZeroInit(Break):
    name = "zero_init"
    category = "optimization"
    description = "all weights of both linear layers initialised to zero"
    symptom = "every hidden unit outputs 0 for every input; loss stays at ln 10"
    metric = "act_first_dead_frac"
    hook = "init_weights"

    def init_weights(self, model: nn.Module) -> None:
        nn.init.zeros_(model.fc1.weight)
        nn.init.zeros_(model.fc2.weight)
