"""Qianmian shared core: id mapping, models, metrics, ranking pipeline and frequency caps."""

__version__ = "0.1.0"
