"""Executors run the model for one step; the only code that knows the device."""
from appliance.runtime.executor.interface import Executor, StepBatch


def create_executor(config, args) -> Executor:
    """The executor an EngineConfig asks for: the Torch executor, padded to static shapes when config.bucketing."""
    if getattr(config, "bucketing", None) is not None:
        from appliance.runtime.executor.bucketed import BucketedTorchExecutor

        return BucketedTorchExecutor(config, args, config.bucketing)
    from appliance.runtime.executor.torch_executor import TorchExecutor

    return TorchExecutor(config, args)


__all__ = ["Executor", "StepBatch", "create_executor"]
