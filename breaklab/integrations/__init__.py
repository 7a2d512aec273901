"""Adapters that feed breaklab's Monitor from training frameworks (extras: breaklab[lightning])."""
