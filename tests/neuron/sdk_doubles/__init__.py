"""TEST DOUBLES of the AWS Neuron SDK — not the SDK, and not a simulator of it.

`install_nxdi(monkeypatch)` puts fake `torch_neuronx` and `neuronx_distributed_inference`
modules into sys.modules. They expose the names and signatures the appliance calls (taken
from neuronx-distributed-inference 0.8), RECORD every call in a `Recorder`, write
placeholder artifact files with the documented names (NxD Inference: neuron_config.json, model.pt,
weights/tp<rank>_sharded_checkpoint.safetensors), and return
logits whose argmax is (last input token + 1) so tests can follow rows through a step.

What they prove: the configuration the appliance passes at compile time, the artifact layout it saves and expects at
load time, the per-step call arguments, and core assignment through NEURON_RT_VISIBLE_CORES.
What they do NOT prove: that NxD Inference accepts these arguments at runtime, that anything
traces or compiles with neuronx-cc, that a NEFF loads or runs, or any numerics. Nothing here has run on Inferentia.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorder:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    vocab_size: int = 512

    def record(self, name: str, **kwargs: Any) -> None:
        self.calls.append((name, kwargs))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kw for n, kw in self.calls if n == name]

    def last(self, name: str) -> dict[str, Any]:
        found = self.named(name)
        if not found:
            raise AssertionError(f"no call named {name!r}; recorded: {[n for n, _ in self.calls]}")
        return found[-1]


def install_nxdi(monkeypatch: Any, version: str = "0.8.16251") -> Recorder:
    from tests.neuron.sdk_doubles import nxdi

    rec = Recorder()
    for name, module in nxdi.build_modules(rec, version).items():
        monkeypatch.setitem(__import__("sys").modules, name, module)
    return rec



def fake_logits(input_ids: Any, vocab_size: int) -> Any:
    """(batch, vocab) logits whose argmax per row is (last input token + 1) % vocab."""
    import torch

    last = input_ids[:, -1].long()
    logits = torch.zeros(input_ids.shape[0], vocab_size)
    logits[torch.arange(input_ids.shape[0]), (last + 1) % vocab_size] = 1.0
    return logits
