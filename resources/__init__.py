"""Data files of vdwstack (monolayer cells, material facts), importable as ``vdwstack.resources``."""
