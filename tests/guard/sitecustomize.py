"""Loaded by the demo test's subprocess: refuse (and record) any non-loopback connection."""

import os
import socket

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def _refuse(target: object) -> None:
    with open(os.environ["RECERT_GUARD_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{target!r}\n")
    raise OSError(f"network guard: {target!r} is not loopback")


def _check(address: object) -> None:
    if isinstance(address, tuple) and address and str(address[0]) not in _LOOPBACK:
        _refuse(address)


def connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _connect(self, address)


def connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _connect_ex(self, address)


def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if host is not None and str(host) not in _LOOPBACK:
        _refuse(host)
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect  # type: ignore[method-assign]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
