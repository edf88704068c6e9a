"""The plain-data codec between the judge and the answer process.

Why a codec of our own: whatever crosses from the answer to the judge must be rebuilt by the
judge, from bytes, as objects of a few builtin types whose comparison the answer cannot change.
``pickle`` would call constructors the answer chose and ``marshal`` would hand back code objects;
this format can only ever produce None, bool, int, float, complex, str, bytes, list, tuple,
dict, set, frozenset and ``Handle`` (the judge's own opaque stand-in for an object the answer
kept). Anything else in the bytes is a ``CodecError``, so is anything nested deeper than
``MAX_DEPTH`` or a message longer than the cap the reader passes.

Each value is a one-byte tag followed by its payload (lengths and counts: 4-byte big-endian):

    N None · T True · F False · i int64 · I big int (length, signed big-endian bytes) · f float64
    c complex (two float64) · s str (length, UTF-8 with surrogates kept) · b bytes (length, raw)
    l list · t tuple · S set · Z frozenset (count, items) · d dict (count, key, value, ...)
    h handle (id, length, class name)

Both sides import this module; only the judge's ``decode`` decides anything. The answer side may
rewrite its own copy at will: the judge still reads nothing but these tags.
"""

from __future__ import annotations

import os
import struct

MAX_DEPTH = 100
MAX_MESSAGE = 64 * 1024 * 1024
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_C128 = struct.Struct(">dd")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class CodecError(ValueError):
    """Bytes that are not a value of the format, or a value the format cannot carry."""


class Handle:
    """An object the answer returned that is not plain data. The judge keeps only its number and
    class name: it is equal to itself alone, has no truth value, no order, no length, and passed
    back to the answer it becomes the original object again. So an object whose ``__eq__`` is
    always true (or any other behaviour of the answer) never runs where the verdict is decided."""

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str):
        self.id, self.type_name = id, type_name

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError(f"the answer returned an object of its class {self.type_name!r}, not plain data: "
                        "it has no truth value outside the answer")

    def __repr__(self):
        return f"<object of the answer's class {self.type_name}>"


# --- encoding ----------------------------------------------------------------------------------------

def encode(value, handle_of=None) -> bytes:
    """``value`` as bytes. Objects of other types go through ``handle_of(obj) -> (id, name)``
    (the answer side keeps them) or, without it, raise ``CodecError``."""
    out: list = []
    _enc(value, out, handle_of, 0)
    return b"".join(out)


def _int(v):
    if _I64_MIN <= v <= _I64_MAX:
        return b"i" + _I64.pack(v)
    data = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
    return b"I" + _U32.pack(len(data)) + data


def _str(v):
    data = v.encode("utf-8", "surrogatepass")
    return b"s" + _U32.pack(len(data)) + data


# exact type -> bytes, for the leaves (one dict lookup instead of a chain of checks: a call to
# the answer encodes and decodes a few of these each way)
_LEAF = {
    type(None): lambda v: b"N",
    bool: lambda v: b"T" if v else b"F",
    int: _int,
    float: lambda v: b"f" + _F64.pack(v),
    str: _str,
    bytes: lambda v: b"b" + _U32.pack(len(v)) + v,
    complex: lambda v: b"c" + _C128.pack(v.real, v.imag),
}


def _enc(v, out, handle_of, depth):
    t = type(v)
    leaf = _LEAF.get(t)
    if leaf is not None:
        out.append(leaf(v))
    elif t in _SEQ_TAG:
        if depth >= MAX_DEPTH:
            raise CodecError(f"nested deeper than {MAX_DEPTH}")
        out.append(_SEQ_TAG[t] + _U32.pack(len(v)))
        depth += 1
        for item in v:
            leaf = _LEAF.get(type(item))
            if leaf is not None:
                out.append(leaf(item))
            else:
                _enc(item, out, handle_of, depth)
    elif t is dict:
        if depth >= MAX_DEPTH:
            raise CodecError(f"nested deeper than {MAX_DEPTH}")
        out.append(b"d" + _U32.pack(len(v)))
        for k, item in v.items():
            _enc(k, out, handle_of, depth + 1)
            _enc(item, out, handle_of, depth + 1)
    elif t is Handle:
        name = v.type_name.encode("utf-8", "surrogatepass")
        out.append(b"h" + _U32.pack(v.id) + _U32.pack(len(name)) + name)
    elif handle_of is not None:
        converted = handle_of(v)
        if type(converted) is tuple:  # (id, class name): kept on the answer's side
            name = converted[1].encode("utf-8", "surrogatepass")
            out.append(b"h" + _U32.pack(converted[0]) + _U32.pack(len(name)) + name)
        else:  # a plain value standing for it (a numpy scalar's item(), a str subclass's str)
            _enc(converted, out, handle_of, depth)
    else:
        raise CodecError(f"an object of type {t.__name__!r} is not plain data")


_SEQ_TAG = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


# --- decoding ------------------------------------------------------------------------------------------

def decode(data: bytes, resolve=None):
    """The value in ``data`` (all of it). ``resolve(id, name)`` turns a handle into an object;
    without it a ``Handle`` is made. Raises ``CodecError`` on anything malformed."""
    try:
        value, end = _dec(memoryview(data), 0, resolve, 0)
    except CodecError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, MemoryError, RecursionError) as e:
        raise CodecError(f"malformed message ({type(e).__name__})") from None
    if end != len(data):
        raise CodecError("trailing bytes after the value")
    return value


def _dec(buf, pos, resolve, depth):
    tag = buf[pos]
    leaf = _LEAF_DEC[tag]
    if leaf is not None:
        return leaf(buf, pos + 1)
    pos += 1
    if tag in (0x6C, 0x74, 0x53, 0x5A, 0x64):  # l t S Z d
        if depth >= MAX_DEPTH:
            raise CodecError(f"nested deeper than {MAX_DEPTH}")
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        if n > len(buf) - pos:  # every item takes at least one byte: a lying count fails here
            raise CodecError("a count runs past the end of the message")
        depth += 1
        if tag == 0x64:
            d = {}
            for _ in range(n):
                k, pos = _dec(buf, pos, resolve, depth)
                v, pos = _dec(buf, pos, resolve, depth)
                d[k] = v  # keys are plain values: hashing them runs no code of the answer
            return d, pos
        items = []
        append = items.append
        for _ in range(n):
            leaf = _LEAF_DEC[buf[pos]]
            v, pos = leaf(buf, pos + 1) if leaf is not None else _dec(buf, pos, resolve, depth)
            append(v)
        if tag == 0x6C:
            return items, pos
        if tag == 0x74:
            return tuple(items), pos
        return (set(items) if tag == 0x53 else frozenset(items)), pos
    if tag == 0x68:  # h
        hid, n = struct.unpack_from(">II", buf, pos)
        pos += 8
        if pos + n > len(buf):
            raise CodecError("a length runs past the end of the message")
        name = bytes(buf[pos:pos + n]).decode("utf-8", "replace")[:200]
        return (resolve(hid, name) if resolve is not None else Handle(hid, name)), pos + n
    raise CodecError(f"unknown tag {tag:#x}")


def _sized(buf, pos):
    n = _U32.unpack_from(buf, pos)[0]
    pos += 4
    if pos + n > len(buf):
        raise CodecError("a length runs past the end of the message")
    return bytes(buf[pos:pos + n]), pos + n


def _dec_str(buf, pos):
    raw, pos = _sized(buf, pos)
    return raw.decode("utf-8", "surrogatepass"), pos


def _dec_big(buf, pos):
    raw, pos = _sized(buf, pos)
    return int.from_bytes(raw, "big", signed=True), pos


def _dec_complex(buf, pos):
    re_, im = _C128.unpack_from(buf, pos)
    return complex(re_, im), pos + 16


# tag byte -> decoder of a leaf value (None: a container, a handle or not a tag)
_LEAF_DEC: list = [None] * 256
_LEAF_DEC[0x4E] = lambda buf, pos: (None, pos)                                  # N
_LEAF_DEC[0x54] = lambda buf, pos: (True, pos)                                  # T
_LEAF_DEC[0x46] = lambda buf, pos: (False, pos)                                 # F
_LEAF_DEC[0x69] = lambda buf, pos: (_I64.unpack_from(buf, pos)[0], pos + 8)     # i
_LEAF_DEC[0x66] = lambda buf, pos: (_F64.unpack_from(buf, pos)[0], pos + 8)     # f
_LEAF_DEC[0x73] = _dec_str                                                      # s
_LEAF_DEC[0x62] = _sized                                                        # b
_LEAF_DEC[0x49] = _dec_big                                                      # I
_LEAF_DEC[0x63] = _dec_complex                                                  # c


# --- framing over a stream socket ---------------------------------------------------------------------

def send(fd: int, payload: bytes) -> None:
    data = _U32.pack(len(payload)) + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Reader:
    """Messages from a stream descriptor, read in as few system calls as the data allows (a call
    to the answer is a round trip: one read per reply, not one per header and body)."""

    def __init__(self, fd: int, cap: int = MAX_MESSAGE):
        self.fd, self.cap, self.buf = fd, cap, b""

    def recv(self):
        """The next message's bytes; None at end of stream. ``CodecError`` if it announces more
        than ``cap`` bytes (the rest is not read: the caller gives up on the peer)."""
        while len(self.buf) < 4:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        n = _U32.unpack_from(self.buf)[0]
        if n > self.cap:
            raise CodecError(f"a message of {n} bytes is over the cap of {self.cap}")
        if len(self.buf) < 4 + n:
            rest = read_exact(self.fd, 4 + n - len(self.buf))
            if rest is None:
                return None
            self.buf += rest
        body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return body


def recv(fd: int, cap: int = MAX_MESSAGE):
    """One message from ``fd`` without read-ahead (for descriptors others also read)."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    n = _U32.unpack(head)[0]
    if n > cap:
        raise CodecError(f"a message of {n} bytes is over the cap of {cap}")
    return read_exact(fd, n)


def read_exact(fd: int, n: int):
    """``n`` bytes from ``fd``, or None at end of file (the worker's frames use it too)."""
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
