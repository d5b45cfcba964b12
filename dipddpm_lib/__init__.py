"""dipddpm_lib: the helper library behind the dipddpm report (DIP × DDPM)."""
from .cache import Cache
from .compute import Compute, Timer, count_flops
from .profiles import PROFILES, Profile, get_profile

__all__ = ["Cache", "Compute", "Timer", "count_flops", "PROFILES", "Profile", "get_profile"]
__version__ = "0.1.0"
