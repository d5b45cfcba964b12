"""dipddpm_lib: the helper library behind the dipddpm report (DIP × DDPM)."""
from .cache import Cache
from .compute import Compute, Timer, count_flops
from .profiles import PROFILES, Profile, get_profile
from .repro import from_environment as _deterministic_from_env

_deterministic_from_env()

__all__ = ["Cache", "Compute", "Timer", "count_flops", "PROFILES", "Profile", "get_profile"]
__version__ = "0.1.0"
