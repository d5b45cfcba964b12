"""One study loop per chapter: its config, its loop over grid × seeds × images, its cache key.
Tidy rows and arrays out; no sentences (the notebooks hold those)."""
