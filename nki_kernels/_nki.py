"""The one place that imports the NKI namespace: the Neuron SDK's when installed, else the project's simulator.

Which namespace on Neuron SDK 2.28 (the last release whose NxD Inference runs NKI kernels on Inf2/Trn1):

- The kernels in nki_kernels/ are written in the NKI Beta 1 language: `nl.arange` index grids, `mask=`,
  `nl.load`/`nl.store`, ISA calls that return their result. SDK 2.28 ships two namespaces: the legacy
  `neuronxcc.nki.*` (Beta 1) and the new top-level `nki.*` (Beta 2, "NKI 0.2.0"). The new one is a different
  language, not a rename: it removes `arange`, `mask`, `nl.load`/`nl.store` and makes every ISA call take an explicit
  `dst` (aws-neuron-sdk nki/deep-dives/nki-migration-guide.rst, "What features in neuronxcc.nki.* are not available
  in nki.*"); "to utilize the Beta 1 language and compiler, continue importing the legacy neuronxcc.nki.* namespace"
  (nki/deep-dives/nki-beta-versions.rst). Its `nki.simulate_kernel` is also not available in 2.28
  (release-notes/components/nki.rst, NKI 0.2.0 [2.28], "removed during code migration").
- `neuronxcc.nki.*` is deprecated but still supported in 2.28: its removal "has been postponed from Neuron 2.28 to
  Neuron 2.29" (release-notes/components/nki.rst, NKI 0.2.0 [2.28]). NxD Inference 0.8 itself imports only
  `neuronxcc.nki` (models/llama/modeling_llama.py, modules/attention/attention_base.py, modules/custom_calls.py).
- 2.29 brings NKI 0.3.0, and "NxD Inference no longer supports NKI kernels on Trn1/Inf2 hardware, as NKI 0.3.0
  kernels are not supported on Trn1/Inf2" (release-notes/components/nxd-inference.rst). So moving to `nki.*` would
  buy nothing on Inf2/Trn1: these kernels import `neuronxcc.nki` first. A machine that has only the new `nki`
  package (SDK 2.29 or later) cannot compile them; it gets the simulator, and NEXT_NKI_ONLY says why.

Porting the kernels to the Beta 2 language is the step to take when the appliance leaves Inf2/Trn1.
"""
from __future__ import annotations

import importlib.util

try:
    import neuronxcc.nki as nki
    import neuronxcc.nki.isa as nisa
    import neuronxcc.nki.language as nl

    NEURON_SDK = True
    NAMESPACE = "neuronxcc.nki"
except ImportError:
    from nki_kernels.simulator import isa as nisa
    from nki_kernels.simulator import language as nl
    from nki_kernels.simulator import nki

    NEURON_SDK = False
    NAMESPACE = "simulator"


def _next_nki_installed() -> bool:
    try:
        return importlib.util.find_spec("nki") is not None
    except (ImportError, ValueError):
        return False


# True when the top-level `nki` package (Beta 2 / NKI 0.3 language) is installed but `neuronxcc.nki` is not: the
# kernels here cannot be compiled by that SDK, and they run on the simulator only.
NEXT_NKI_ONLY = not NEURON_SDK and _next_nki_installed()

__all__ = ["nki", "nl", "nisa", "NEURON_SDK", "NAMESPACE", "NEXT_NKI_ONLY"]
