"""A training loop callback that crashes at a chosen step, for the tests of resume and of what a crash leaves."""

from __future__ import annotations

from hf_transfer.train.plan import Callback


class Crash(Exception):
    pass


class CrashAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, step: int, epoch: int) -> None:
        if step == self.step:
            raise Crash(f"simulated crash at step {step}")
