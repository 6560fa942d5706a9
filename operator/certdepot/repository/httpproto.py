"""uvicorn's httptools protocol with a bound on an incomplete request header block.

h11 refuses a header block still incomplete after 16 KiB; llhttp (httptools) has no such
limit and buffers whatever a client sends before the blank line (a 4 MB header was
answered 200). This keeps h11's behaviour: more than ``MAX_INCOMPLETE_HEADER_BYTES``
received while a request's headers are still incomplete is answered 400 and the
connection closed. A block that arrives complete in one read is parsed, as h11 does.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: h11's default ``max_incomplete_event_size``, which uvicorn applied before.
MAX_INCOMPLETE_HEADER_BYTES = 16 * 1024


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # the next bytes belong to a request's header block
        self._header_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)  # on_headers_complete ends the block
        if (self._in_headers and self._header_bytes > MAX_INCOMPLETE_HEADER_BYTES
                and not self.transport.is_closing()):
            self.logger.warning("Request header block too large.")
            self.send_400_response("Request header block too large.")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_headers = True  # keep-alive: the next request's headers follow
        self._header_bytes = 0
        super().on_message_complete()
