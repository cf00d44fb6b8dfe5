"""Reproducible performance runs; each prints one JSON object per figure."""
