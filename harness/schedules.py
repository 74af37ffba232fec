"""Learning-rate schedules: a spec field that scales an optimizer's base rate per step."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: the fields each kind reads; giving any other one is a spec mistake worth reporting
_FIELDS_USED = {
    "constant": set(),
    "step": {"every", "decay"},
    "exponential": {"every", "decay"},
    "cosine": {"floor"},
}


class Schedule(BaseModel):
    """Multiplies the base learning rate by ``factor(t, max_steps)`` at step ``t``.

    - ``constant``: 1.
    - ``step``: ``decay ** floor(t / every)``, a drop every ``every`` steps.
    - ``exponential``: ``decay ** (t / every)``, the smooth version of ``step``.
    - ``cosine``: from 1 down to ``floor`` over the whole budget of ``max_steps``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["constant", "step", "exponential", "cosine"] = Field("constant", description="shape of the schedule")
    every: int = Field(1000, ge=1, description="step, exponential: steps over which the rate is multiplied by decay")
    decay: float = Field(0.5, gt=0.0, le=1.0, description="step, exponential: multiplier per `every` steps")
    floor: float = Field(0.0, ge=0.0, le=1.0, description="cosine: final factor at the end of the budget")

    @model_validator(mode="after")
    def _only_fields_of_kind(self) -> Schedule:
        unused = (self.model_fields_set - {"kind"}) - _FIELDS_USED[self.kind]
        if unused:
            takes = ", ".join(sorted(_FIELDS_USED[self.kind])) or "no parameters"
            raise ValueError(
                f"the {self.kind!r} schedule does not use {', '.join(sorted(unused))}; "
                f"it takes {takes}: remove the others or choose another kind"
            )
        return self

    def factor(self, t: int, max_steps: int) -> float:
        """The multiplier of the base learning rate at step ``t`` of a ``max_steps`` budget."""
        if self.kind == "step":
            return self.decay ** (t // self.every)
        if self.kind == "exponential":
            return self.decay ** (t / self.every)
        if self.kind == "cosine":
            progress = min(t, max_steps) / max(max_steps, 1)
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
