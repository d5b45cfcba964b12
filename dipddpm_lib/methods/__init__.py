"""One file per restoration method; each maps a noisy batch to an estimate and its compute
per image. DIP alone is :func:`dipddpm_lib.dip.fit`."""
