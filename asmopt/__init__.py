"""asmopt: faster x86-64 code than gcc -O3, verified and measured."""

__version__ = "0.1.0"
