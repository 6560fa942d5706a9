"""The ACME protocol (RFC 8555 and extensions), shared by the repository and the operator.

Everything here is free of I/O except :mod:`certdepot.acme.client`.
"""
