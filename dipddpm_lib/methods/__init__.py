"""One file per restoration method of chapter 03's photographs (task C).

Every method maps a noisy batch ``y`` (N×C×H×W in [0, 1], Gaussian noise of std σ/255) to an
estimate and its :class:`~dipddpm_lib.compute.Compute` per image. Single priors: ``classical``
(BM3D, NL-means), ``ddpm_denoise`` (one-step x̂0, the ancestral chain and DDIM from t_σ).
Combined: ``dip_t0``, ``tdpm_dip``, ``fuse_avg``, and the hybrids in which the photo DDPM
guides the DIP fit itself (``hybrid_red``, ``hybrid_target``). DIP alone is
:func:`dipddpm_lib.dip.fit`; every DIP-based method is a *target* for that fit.
"""
