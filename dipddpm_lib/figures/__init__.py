"""Plot functions, one module per chapter: every number drawn is passed in."""
