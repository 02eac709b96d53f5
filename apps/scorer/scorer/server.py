"""uvicorn's httptools protocol with the two limits it lacks: the size of a request head and the
time a request may take to arrive.

uvicorn bounds neither: a client could send a 1 MB header, or open a connection and send half a
request and nothing more, holding a connection (and at shutdown the whole drain) for ever. Here
a head (request line and headers) over `HEAD_LIMIT_BYTES` is refused with 414 (the URL alone) or
431, and a request whose head and body have not fully arrived `REQUEST_TIMEOUT_SECONDS` after
it began (or after the connection opened) gets 408 and the connection is closed. The time the
app then takes to answer is not limited here. Every refusal carries uvicorn's default headers,
so `X-Model-Build` too, like the parser's own 400 for a request that is not HTTP.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from scorer import settings as settings_module

HEAD_LIMIT_BYTES = 16 * 1024


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; send_400_response then sends the refusal."""


class Protocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._timeout = settings_module.current().request_timeout_seconds
        self._timer = None
        self._refusal: tuple[int, str] | None = None
        self._in_head = True
        self._head_bytes = 0  # raw bytes of chunks that lay wholly inside the head
        self._field_bytes = 0  # URL and header bytes the parser handed over
        self._cycle_before = None  # the cycle of the previous request on this connection
        self._arriving = False  # a request has begun and not fully arrived

    # The request timer: armed when the connection opens and when a request begins, disarmed once
    # the request has fully arrived (after a response, uvicorn's keep-alive timeout applies).

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._field_bytes = True, 0, 0
        self._arriving = True
        self._cycle_before = self.cycle
        self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._arriving = False
        self._disarm()
        super().on_message_complete()

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self._timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._arriving:  # an idle connection: uvicorn's keep-alive would close it too
            self.transport.close()
            return
        if self.pipeline:  # this request waits behind another still being answered: not its fault
            return self._arm()
        if self.cycle is not None and self.cycle is not self._cycle_before and self.cycle.response_started:
            self.transport.close()  # answered already (it did not need its body), never finished
            return
        self._send_refusal(408, f"the request did not arrive within {self._timeout:g} s")

    # The head limit.

    def data_received(self, data: bytes) -> None:
        in_head_before = self._in_head
        super().data_received(data)
        if in_head_before and self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > HEAD_LIMIT_BYTES:
                self._send_refusal(431, f"request head larger than {HEAD_LIMIT_BYTES} bytes")

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 414, f"URL longer than {HEAD_LIMIT_BYTES} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, 431, f"request head larger than {HEAD_LIMIT_BYTES} bytes")
        super().on_header(name, value)

    def _count(self, size: int, status: int, message: str) -> None:
        self._field_bytes += size
        if self._field_bytes > HEAD_LIMIT_BYTES:
            self._refusal = (status, message)
            raise _Refused(message)

    # Refusals.

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this when the parser fails: a callback refused, or it is not HTTP."""
        status, message = self._refusal or (400, "not a valid HTTP/1.1 request")
        self._send_refusal(status, message)

    def _send_refusal(self, status: int, message: str) -> None:
        self._disarm()
        body = json.dumps({"detail": message}).encode()
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
