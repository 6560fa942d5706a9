"""The ACME protocol (RFC 8555 and extensions), shared by the repository and the operator.

Everything here is free of I/O except the client: :mod:`certdepot.acme.transport` (httpx's
request/response types; connections through :mod:`certdepot.acme.aiohttp_transport`) and the
layers over it, :mod:`rfc8555`, :mod:`extensions` and :mod:`client`.
"""
