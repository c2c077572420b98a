"""Polite HTTP: pure policy (`policy`) and the throttle that applies it (`throttle`)."""
