"""safekit: open, software-only high availability for Linux applications."""

__version__ = "0.1.0.dev0"
