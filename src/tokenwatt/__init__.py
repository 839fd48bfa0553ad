"""tokenwatt: useful output per joule as the first number of LLM inference.

Subpackages: ``energy`` (meters, monitor, facility), ``workload`` (requests, sessions, traces),
``bench`` (endpoint benchmark), ``engine`` (reference engine and server), ``warehouse`` (tiered
KV cache), ``plan`` (fleet simulator). Each has its own explicit ``__all__``.
"""

from tokenwatt.errors import TokenwattError

__version__ = "0.1.0"

__all__ = ["TokenwattError", "__version__"]
