"""Quantum Leap core: an event-sourced trading engine for research and production."""

__version__ = "0.1.0"
