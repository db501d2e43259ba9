"""Executors run the model for one step; the only code that knows the device."""
from appliance.runtime.executor.interface import Executor, StepBatch

__all__ = ["Executor", "StepBatch"]
