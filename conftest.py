"""pytest configuration: Hypothesis profiles.

``ci`` (the default) is derandomized, so every run draws the same examples; ``dev`` draws
fresh random examples and more of them.  Select with ``HYPOTHESIS_PROFILE=dev``.
JIT compilation must never hit a deadline, so deadlines are off in both profiles.
"""
import os

# One BLAS thread: the neural learners' matrices are small, and OpenBLAS's threads, when
# the cores are shared with other processes, make them tens of times slower (set before
# NumPy is first imported; an explicit setting in the environment wins).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", deadline=None, max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
