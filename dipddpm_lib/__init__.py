"""dipddpm_lib: the helper library behind the dipddpm report (DIP × DDPM). Importing it imports
no torch (the build's steps stay light): the names below load their module on first use."""
from importlib import import_module

from .repro import from_environment as _deterministic_from_env

_LAZY = {"Cache": "cache", "Compute": "compute", "Timer": "compute", "count_flops": "compute",
         "PROFILES": "profiles", "Profile": "profiles", "get_profile": "profiles"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_deterministic_from_env()

__all__ = ["Cache", "Compute", "Timer", "count_flops", "PROFILES", "Profile", "get_profile"]
__version__ = "0.1.0"
