"""Learning-rate schedule: linear warm-up, then poly decay, stepped every iteration."""

from __future__ import annotations

from torch.optim import Optimizer


def poly_lr(
    it: int,
    base_lr: float,
    total_iters: int,
    power: float = 0.9,
    min_lr: float = 1e-4,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """Learning rate at iteration `it` (0-based).

    Poly: `(base_lr - min_lr) * (1 - it / total_iters) ** power + min_lr` (mmsegmentation's
    form). During the first `warmup_iters` iterations that value is scaled by a factor rising
    linearly from `warmup_ratio` to 1.
    """
    progress = min(it, total_iters) / total_iters
    lr = (base_lr - min_lr) * (1.0 - progress) ** power + min_lr
    if it < warmup_iters:
        lr *= warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters
    return lr


class PolySchedule:
    """Sets each param group's lr from `poly_lr`; groups keep their own `lr_mult`.

    The schedule is a pure function of the iteration, so its state is just that number.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_iters: int,
        power: float = 0.9,
        min_lr: float = 1e-4,
        warmup_iters: int = 0,
        warmup_ratio: float = 1e-6,
    ) -> None:
        self.optimizer = optimizer
        self.total_iters = total_iters
        self.power = power
        self.min_lr = min_lr
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group.setdefault("lr_mult", 1.0)
        self.iteration = 0
        self._apply()

    def step(self) -> None:
        """Advance one iteration and update the learning rates."""
        self.iteration += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """Current lr of every param group."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def base_lr(self) -> float:
        """The scheduled `optim.lr` of this iteration; each group trains at it x its lr_mult."""
        group = self.optimizer.param_groups[0]
        return group["lr"] / group["lr_mult"]

    def state_dict(self) -> dict:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            base = group["initial_lr"]
            lr = poly_lr(
                self.iteration,
                base,
                self.total_iters,
                self.power,
                self.min_lr * group["lr_mult"],
                self.warmup_iters,
                self.warmup_ratio,
            )
            group["lr"] = lr
