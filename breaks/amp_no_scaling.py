"""amp_no_scaling: float16 autocast without a GradScaler.

float16 cannot represent magnitudes below about 6e-8. Small gradients computed in float16 round
to exactly zero (underflow) unless the loss is first multiplied by a large scale. Measured here:
no NaN appears; the symptom is scattered exact-zero gradient entries (not whole dead units) that
grow as the loss, and with it the gradients, get small, and slower late learning.
"""
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
        return False  # BUG: float16 gradients underflow. Fix: return amp
