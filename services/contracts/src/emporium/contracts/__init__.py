"""Hand-written parts of the contracts: the limits of every field, and event checks.

Everything else in this package is generated from protos/ (``make protos``);
this subpackage is not, and the generator leaves it alone.
"""
