"""The neuron target: compile options, bucketing, the NxD Inference backend, the executor.

Importing this package never imports the Neuron SDK; only appliance.runtime.neuron.sdk does, lazily.
"""
