"""Bytewax dataflows of RTTM, run with ``python -m bytewax.run dataflows.<name>``."""
