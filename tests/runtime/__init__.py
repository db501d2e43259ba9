"""Engine tests. OpenMP worker threads sleep instead of spinning when idle: on a shared CI machine, spinning threads
made engine steps 10-100x slower. Effective only if torch is not imported yet."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
