"""The plain-data codec between the judge and the answer process.

Why a codec of our own: whatever crosses from the answer to the judge must be rebuilt by the
judge, from bytes, as objects of a few builtin types whose comparison the answer cannot change.
``pickle`` would call constructors the answer chose and ``marshal`` would hand back code objects;
this format can only ever produce None, bool, int, float, complex, str, bytes, bytearray, list,
tuple, dict, set, frozenset and ``Handle`` (the judge's own opaque stand-in for an object the
answer kept). Anything else in the bytes is a ``CodecError``, so is a message longer than the
cap the reader passes.

What it keeps of a value beyond its contents, so that an honest answer gets the verdict a plain
run gives:

* **identity and aliasing**: every mutable container (list, dict, set, bytearray) gets a number
  in the order it is written; a second occurrence of the same object is written as a reference
  (``R``) to that number, and read back as the same object. So ``[a, a]`` is two references to
  one list, a list that contains itself comes back as one, and (``table``) a reply can refer to
  the containers of the call's own arguments: an answer that returns the list it was given
  returns *that* list to the test, and one that sorts its argument in place has the test's list
  sorted (``judge``/``child`` send the arguments' new contents back).
* **depth**: encoding and decoding are iterative, so nesting is bounded by memory, not by
  Python's recursion limit (a 5,000-deep list crosses like a flat one).
* **size**: a list of 16 or more plain ints that fit in 64 bits (or of floats) is written as one
  packed array (``P``/``D``), so a 10-million-element return costs tens of milliseconds.

Each value is a one-byte tag followed by its payload (lengths and counts: 4-byte big-endian):

    N None · T True · F False · i int64 · I big int (length, signed big-endian bytes) · f float64
    c complex (two float64) · s str (length, UTF-8 with surrogates kept) · b bytes (length, raw)
    B bytearray (length, raw) · l list · t tuple · S set · Z frozenset (count, items)
    d dict (count, key, value, ...) · P list of int64 · D list of float64 (count, native-endian
    array: both ends are one machine) · R reference (number) · h handle (id, length, class name)

Both sides import this module; only the judge's ``decode`` decides anything. The answer side may
rewrite its own copy at will: the judge still reads nothing but these tags.
"""

from __future__ import annotations

import itertools
import os
import struct
from array import array

MAX_MESSAGE = 64 * 1024 * 1024  # the default cap; the sandbox passes its own (a share of --memory-mb)
PACK_MIN = 16                   # shorter lists are written item by item
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_C128 = struct.Struct(">dd")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class CodecError(ValueError):
    """Bytes that are not a value of the format, or a value the format cannot carry."""


class Handle:
    """An object the answer returned that is not plain data. The judge keeps only its number and
    class name: it is equal to itself alone, has no truth value, no order, and passed back to
    the answer it becomes the original object again. So an object whose ``__eq__`` is always
    true (or any other behaviour of the answer) never runs where the verdict is decided."""

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str):
        self.id, self.type_name = id, type_name

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    __hash__ = object.__hash__

    def __copy__(self):  # a reference to the answer's object: copying it copies the reference
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("an object of the answer's cannot be pickled outside the answer")

    def __bool__(self):
        raise TypeError(f"the answer returned an object of its class {self.type_name!r}, not plain data: "
                        "it has no truth value outside the answer")

    def __repr__(self):
        return f"<object of the answer's class {self.type_name}>"


# --- encoding ----------------------------------------------------------------------------------------

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
_MUTABLE = (list, dict, set, bytearray)
_SEQ_TAG = {list: b"l", tuple: b"t", set: b"S", frozenset: b"Z"}


def _packed(v: list) -> bytes | None:
    """``v`` as one packed array when it is long and all plain ints in int64 range, or all floats."""
    first = type(v[0])
    if first is not int and first is not float:
        return None
    if set(map(type, v)) != {first}:  # bools are ints to array(): never packed
        return None
    try:
        data = array("q" if first is int else "d", v).tobytes()
    except OverflowError:
        return None
    return (b"P" if first is int else b"D") + _U32.pack(len(v)) + data


def encode(value, handle_of=None, table: list | None = None) -> bytes:
    """``value`` as bytes. Objects of other types go through ``handle_of(obj) -> (id, name)``
    (the answer side keeps them) or a plain value standing for them, or, without it, raise
    ``CodecError``. ``table``: the mutable containers already numbered (a reply refers to the
    call's arguments by their numbers); the ones this value adds are appended to it."""
    out: list = []
    table = [] if table is None else table
    memo = {id(obj): i for i, obj in enumerate(table)} if table else {}
    _enc(value, out, memo, table, handle_of, 0)
    return b"".join(out)


RECURSION = 64  # deeper than this, a subtree is written by the iterative loop (any depth, a little slower)


def _enc(v, out, memo, table, handle_of, depth):
    """Recursive (fast for the small values of most calls) down to ``RECURSION`` levels."""
    t = type(v)
    leaf = _LEAF.get(t)
    if leaf is not None:
        out.append(leaf(v))
        return
    if depth >= RECURSION:
        _enc_iter(v, out, memo, table, handle_of)
        return
    if t in _MUTABLE and _numbered(v, t, out, memo, table):
        return
    if t in _SEQ_TAG:
        out.append(_SEQ_TAG[t] + _U32.pack(len(v)))
        depth += 1
        for item in v:
            leaf = _LEAF.get(type(item))
            if leaf is not None:
                out.append(leaf(item))
            else:
                _enc(item, out, memo, table, handle_of, depth)
    elif t is dict:
        out.append(b"d" + _U32.pack(len(v)))
        depth += 1
        for k, item in v.items():
            _enc(k, out, memo, table, handle_of, depth)
            _enc(item, out, memo, table, handle_of, depth)
    else:
        converted = _other(v, t, out, handle_of)
        if converted is not _DONE:
            _enc(converted, out, memo, table, handle_of, depth)


_DONE = object()


def _numbered(v, t, out, memo, table) -> bool:
    """Number a mutable container, or write a reference to its number; True when nothing more
    is to be written for it (a reference, a bytearray, a packed array)."""
    ref = memo.get(id(v))
    if ref is not None:
        out.append(b"R" + _U32.pack(ref))
        return True
    memo[id(v)] = len(table)
    table.append(v)
    if t is bytearray:
        out.append(b"B" + _U32.pack(len(v)) + bytes(v))
        return True
    if t is list and len(v) >= PACK_MIN:
        packed = _packed(v)
        if packed is not None:
            out.append(packed)
            return True
    return False


def _other(v, t, out, handle_of):
    """A handle, or what ``handle_of`` makes of an object that is not plain data: ``_DONE`` when
    written, else the plain value that stands for it (to be written in its place)."""
    if isinstance(v, Handle):
        name = v.type_name.encode("utf-8", "surrogatepass")
        out.append(b"h" + _U32.pack(v.id) + _U32.pack(len(name)) + name)
        return _DONE
    if handle_of is None:
        raise CodecError(f"an object of type {t.__name__!r} is not plain data")
    converted = handle_of(v)
    if type(converted) is tuple:  # (id, class name): kept on the answer's side
        name = converted[1].encode("utf-8", "surrogatepass")
        out.append(b"h" + _U32.pack(converted[0]) + _U32.pack(len(name)) + name)
        return _DONE
    return converted  # a plain value standing for it (a numpy scalar's item(), a str subclass's str)


def _enc_iter(value, out, memo, table, handle_of):
    """The same bytes as ``_enc``, with a stack of iterators instead of recursion."""
    stack = [iter((value,))]
    while stack:
        for v in stack[-1]:
            t = type(v)
            leaf = _LEAF.get(t)
            if leaf is not None:
                out.append(leaf(v))
                continue
            if t in _MUTABLE and _numbered(v, t, out, memo, table):
                continue
            if t in _SEQ_TAG:
                out.append(_SEQ_TAG[t] + _U32.pack(len(v)))
                if v:
                    stack.append(iter(v))
                    break
            elif t is dict:
                out.append(b"d" + _U32.pack(len(v)))
                if v:
                    stack.append(itertools.chain.from_iterable(v.items()))
                    break
            else:
                converted = _other(v, t, out, handle_of)
                if converted is not _DONE:
                    stack.append(iter((converted,)))
                    break
        else:
            stack.pop()


# --- decoding ------------------------------------------------------------------------------------------

def decode(data: bytes, resolve=None, table: list | None = None):
    """The value in ``data`` (all of it). ``resolve(id, name)`` turns a handle into an object;
    without it a ``Handle`` is made. ``table``: the containers already numbered (see
    ``encode``); the ones read here are appended. Raises ``CodecError`` on anything malformed."""
    table = [] if table is None else table
    try:
        value, end = _dec(memoryview(data), 0, resolve, table, 0)
    except CodecError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, MemoryError) as e:
        raise CodecError(f"malformed message ({type(e).__name__})") from None
    if end != len(data):
        raise CodecError("trailing bytes after the value")
    return value


def _dec(buf, pos, resolve, table, depth):
    """Recursive (fast for the small values of most calls) down to ``RECURSION`` levels."""
    tag = buf[pos]
    leaf = _LEAF_DEC[tag]
    if leaf is not None:
        return leaf(buf, pos + 1)
    if depth >= RECURSION or tag not in (0x6C, 0x74, 0x53, 0x5A, 0x64):
        return _dec_iter(buf, pos, resolve, table)
    n = _U32.unpack_from(buf, pos + 1)[0]
    pos += 5
    if n > len(buf) - pos:  # every item takes at least one byte: a lying count fails here
        raise CodecError("a count runs past the end of the message")
    depth += 1
    if tag == 0x64:
        d = {}
        table.append(d)
        for _ in range(n):
            k, pos = _dec(buf, pos, resolve, table, depth)
            d[k], pos = _dec(buf, pos, resolve, table, depth)  # keys are plain: hashing runs no code of the answer
        return d, pos
    items = [] if tag != 0x53 else set()
    if tag in (0x6C, 0x53):
        table.append(items)
    add = items.add if tag == 0x53 else items.append
    for _ in range(n):
        leaf = _LEAF_DEC[buf[pos]]
        v, pos = leaf(buf, pos + 1) if leaf is not None else _dec(buf, pos, resolve, table, depth)
        add(v)
    if tag == 0x74:
        return tuple(items), pos
    if tag == 0x5A:
        return frozenset(items), pos
    return items, pos


def _dec_iter(buf, pos, resolve, table):
    """Iterative: a stack of open containers, each [add, items left, kind, the container or its
    items]. Lists, dicts and sets are made (and numbered) when their header is read, so that a
    reference inside them to themselves finds them; tuples and frozensets when they are complete.
    Also reads the tags that are neither leaves nor containers (references, arrays, handles)."""
    size = len(buf)
    result = []
    frames = [[result.append, 1, None, None]]
    while True:
        frame = frames[-1]
        if frame[1] == 0:  # this container is complete: hand it to its parent
            frames.pop()
            if not frames:
                return result[0], pos
            kind, items = frame[2], frame[3]
            value = tuple(items) if kind == 0x74 else frozenset(items) if kind == 0x5A else items
            parent = frames[-1]
            parent[1] -= 1
            parent[0](value)
            continue
        tag = buf[pos]
        leaf = _LEAF_DEC[tag]
        if leaf is not None:
            value, pos = leaf(buf, pos + 1)
        elif tag in (0x6C, 0x74, 0x53, 0x5A, 0x64):  # l t S Z d
            n = _U32.unpack_from(buf, pos + 1)[0]
            pos += 5
            if n > size - pos:  # every item takes at least one byte: a lying count fails here
                raise CodecError("a count runs past the end of the message")
            if tag == 0x64:
                items = {}
                add = _dict_adder(items)
                n *= 2
            elif tag == 0x53:
                items = set()
                add = items.add
            else:
                items = []
                add = items.append
            if tag in (0x6C, 0x64, 0x53):
                table.append(items)
            frames.append([add, n, tag, items])
            continue
        elif tag == 0x52:  # R
            ref = _U32.unpack_from(buf, pos + 1)[0]
            pos += 5
            if ref >= len(table):
                raise CodecError(f"a reference to container #{ref}, which does not exist")
            value = table[ref]
        elif tag in (0x50, 0x44):  # P D
            n = _U32.unpack_from(buf, pos + 1)[0]
            pos += 5
            if 8 * n > size - pos:
                raise CodecError("a packed array runs past the end of the message")
            packed = array("q" if tag == 0x50 else "d")
            packed.frombytes(buf[pos:pos + 8 * n])
            pos += 8 * n
            value = packed.tolist()
            table.append(value)
        elif tag == 0x42:  # B
            raw, pos = _sized(buf, pos + 1)
            value = bytearray(raw)
            table.append(value)
        elif tag == 0x68:  # h
            hid, n = struct.unpack_from(">II", buf, pos + 1)
            pos += 9
            if pos + n > size:
                raise CodecError("a length runs past the end of the message")
            name = bytes(buf[pos:pos + n]).decode("utf-8", "replace")[:200]
            pos += n
            value = resolve(hid, name) if resolve is not None else Handle(hid, name)
        else:
            raise CodecError(f"unknown tag {tag:#x}")
        frame[1] -= 1
        frame[0](value)


def _dict_adder(d: dict):
    key = []

    def add(item):
        if key:
            d[key.pop()] = item  # keys are plain values: hashing them runs no code of the answer
        else:
            key.append(item)

    return add


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


# tag byte -> decoder of a leaf value (None: a container, a reference, a handle or not a tag)
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
