"""Portico: a strict, fast application server for ASGI and WSGI apps."""

__version__ = "0.1.0"
