"""OpenDeep: outbound phone calls by a real-time voice AI, on Asterisk and Ray."""

__version__ = "0.1.0"
