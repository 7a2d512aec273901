"""The amp_no_scaling break: one hook of breaks.base.Break, overridden (see `breaklab list`)."""
from breaklab.breaks.base import Break


class AmpNoScaling(Break):
    name = "amp_no_scaling"
    category = "numerics"
    description = "float16 autocast with the GradScaler disabled (no loss scaling)"
    symptom = "scattered exactly-zero gradient entries from float16 underflow, growing over training"
    metric = "zero_grad_frac_by_layer"
    hook = "use_grad_scaler"
    needs_amp = True  # this break switches --amp on

    def use_grad_scaler(self, amp: bool) -> bool:
        return False
