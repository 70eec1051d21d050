"""The ``.lgn`` netlist file: a versioned JSON header plus compact little-endian arrays.

Layout (version 1; all integers little-endian, see ``docs/netlist.md``)::

    offset  size  field
    0       8     magic  b"\\x89LGN\\r\\n\\x1a\\n"  (PNG-style: catches text-mode transfers)
    8       4     u32 format version (1)
    12      4     u32 header length H (bytes of UTF-8 JSON, space-padded to a multiple of 8)
    16      8     u64 data length D (bytes of the array section)
    24      4     u32 CRC-32 (zlib) of the H + D bytes that follow the preamble
    28      4     u32 reserved, 0
    32      H     header JSON
    32+H    D     arrays, each at an 8-byte aligned offset inside the data section

The header holds the input encoding, the class names, the bias, the gate count
of every layer, the output count of every class, the array table
(``name -> dtype, offset, count``), ``meta`` and the netlist's
:meth:`~lgn_fpga.netlist.ir.Netlist.content_hash`.  The arrays are ``ops``
(u1, every gate of every layer, in layer order), ``a`` and ``b`` (<i4, global
signal ids) and ``outputs`` (<i4, the signals of class 0, then class 1, ...).

:func:`load` checks, in order: magic, version, size (truncation / trailing
bytes), CRC (corruption, hand edits), the header's fields and array table,
:meth:`~lgn_fpga.netlist.ir.Netlist.validate`, and the content hash.  Each
fault raises one :class:`~lgn_fpga.netlist.ir.NetlistError` whose single line
names the file and says what to do.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.encoding import ThermometerEncoding
from ..fileio import atomic_write_bytes
from .ir import Layer, Netlist, NetlistError

__all__ = ["MAGIC", "FORMAT_VERSION", "SUFFIX", "save", "load", "dumps", "loads", "read_header"]

MAGIC = b"\x89LGN\r\n\x1a\n"
FORMAT_VERSION = 1
SUFFIX = ".lgn"
_PREAMBLE = struct.Struct("<8sIIQII")     # magic, version, header length, data length, crc32, reserved
assert _PREAMBLE.size == 32
_FORMAT_NAME = "lgn-netlist"
# name -> (dtype in the file, dtype in memory)
_ARRAYS = {"ops": ("u1", np.uint8), "a": ("<i4", np.int32), "b": ("<i4", np.int32),
           "outputs": ("<i4", np.int32)}
_REEXPORT = "re-export it with 'lgn-fpga export'"


def _json_default(o):
    # meta is free-form provenance; numpy scalars and paths are the usual strays.
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serializable")


def _pad8(n: int) -> int:
    return -n % 8


def dumps(net: Netlist) -> bytes:
    """The ``.lgn`` bytes of ``net`` (validated first).

    Raises
    ------
    NetlistError
        If ``net`` does not validate or its ``meta`` cannot be written as JSON.
    """
    net.validate()
    ops = np.concatenate([l.ops for l in net.layers]) if net.layers else np.zeros(0, np.uint8)
    a = np.concatenate([l.a for l in net.layers]) if net.layers else np.zeros(0, np.int32)
    b = np.concatenate([l.b for l in net.layers]) if net.layers else np.zeros(0, np.int32)
    outs = np.concatenate(net.outputs) if net.outputs else np.zeros(0, np.int32)
    arrays = {"ops": ops, "a": a, "b": b, "outputs": outs}
    table, chunks, pos = {}, [], 0
    for name, (ftype, _) in _ARRAYS.items():
        raw = np.ascontiguousarray(arrays[name], dtype=np.dtype(ftype)).tobytes()
        table[name] = {"dtype": ftype, "offset": pos, "count": len(arrays[name])}
        chunks.append(raw + b"\0" * _pad8(len(raw)))
        pos += len(chunks[-1])
    data = b"".join(chunks)
    header = {
        "format": _FORMAT_NAME,
        "version": FORMAT_VERSION,
        "writer": f"lgn-fpga {__version__}",
        "content_hash": net.content_hash(),
        "encoding": net.encoding.to_dict(),
        "classes": [str(c) for c in net.class_names],
        "bias": [int(x) for x in net.bias],
        "layers": [len(l) for l in net.layers],
        "outputs": [len(o) for o in net.outputs],
        "arrays": table,
        "meta": net.meta,
    }
    try:
        text = json.dumps(header, indent=1, default=_json_default, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise NetlistError(f"netlist meta cannot be saved as JSON ({e}); keep meta to strings, numbers, "
                           f"lists and dicts") from None
    text += b" " * _pad8(len(text))
    crc = zlib.crc32(data, zlib.crc32(text))
    return _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(text), len(data), crc, 0) + text + data


def save(net: Netlist, path) -> Path:
    """Write ``net`` to ``path`` atomically (temporary file in the same folder, then rename).

    Returns the path written.  A crash mid-write leaves any previous file intact.
    """
    return atomic_write_bytes(Path(path), dumps(net))


def load(path) -> Netlist:
    """Read and fully check a ``.lgn`` file.

    Raises
    ------
    NetlistError
        One line naming the file and the fault: not a netlist, unsupported
        version, truncated, corrupt or hand-edited, malformed header, invalid
        netlist, or content hash mismatch.
    """
    return _parse(_read(path), str(path))[0]


def read_header(path) -> dict:
    """The JSON header of a ``.lgn`` file (``writer``, ``meta``, ...), after every check of :func:`load`."""
    return _parse(_read(path), str(path))[1]


def _read(path) -> bytearray:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return bytearray(f.read())   # writable: the arrays become views of it, without a copy
    except FileNotFoundError:
        raise NetlistError(f"{path}: no such netlist file; create one with 'lgn-fpga export RUN -o {path}'") from None
    except IsADirectoryError:
        raise NetlistError(f"{path} is a directory, not a .lgn netlist file") from None
    except OSError as e:
        raise NetlistError(f"{path}: cannot read ({e.strerror or e})") from None


def _fail(name: str, msg: str):
    raise NetlistError(f"{name}: {msg}")


def loads(data, name: str = "<bytes>") -> Netlist:
    """Parse ``.lgn`` bytes (see :func:`load`); ``name`` prefixes error messages."""
    return _parse(data, name)[0]


def _parse(data, name: str):
    buf = memoryview(data)
    n = len(buf)
    if n < len(MAGIC) or bytes(buf[:len(MAGIC)]) != MAGIC:
        if n < len(MAGIC) and bytes(buf) == MAGIC[:n]:
            _fail(name, f"truncated: only {n} bytes; {_REEXPORT}")
        _fail(name, "not an .lgn netlist file (it does not start with the .lgn magic bytes)")
    if n < _PREAMBLE.size:
        _fail(name, f"truncated: {n} bytes, shorter than the {_PREAMBLE.size}-byte preamble; {_REEXPORT}")
    _, version, hlen, dlen, crc, _ = _PREAMBLE.unpack_from(buf, 0)
    if version != FORMAT_VERSION:
        hint = "upgrade lgn-fpga to read it" if version > FORMAT_VERSION else _REEXPORT
        _fail(name, f"netlist format version {version}; this lgn-fpga reads version {FORMAT_VERSION}: {hint}")
    expect = _PREAMBLE.size + hlen + dlen
    if n < expect:
        _fail(name, f"truncated: {n} bytes, the preamble says {expect}; {_REEXPORT}")
    if n > expect:
        _fail(name, f"{n - expect} unexpected bytes after the end of the netlist (corrupt or appended to); "
                    f"{_REEXPORT}")
    body = buf[_PREAMBLE.size:]
    if zlib.crc32(body) != crc:
        _fail(name, f"checksum mismatch: the file is corrupt or was edited by hand; {_REEXPORT}")
    try:
        header = json.loads(bytes(body[:hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(name, f"header is not valid JSON ({e}); {_REEXPORT}")
    net = _from_header(header, body[hlen:], name)
    try:
        net.validate()
    except NetlistError as e:
        _fail(name, f"invalid netlist: {e}")
    h = net.content_hash()
    if h != header["content_hash"]:
        _fail(name, f"content hash mismatch (header {header['content_hash'][:12]}, contents {h[:12]}): the "
                    f"netlist was modified after it was written; {_REEXPORT}")
    return net, header


def _field(header, key, kind, name):
    v = header.get(key) if isinstance(header, dict) else None
    ok = isinstance(v, kind) and not isinstance(v, bool)
    if ok and kind is list:
        ok = all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v) if key in (
            "layers", "outputs", "bias") else all(isinstance(x, str) for x in v)
    if not ok:
        _fail(name, f"header field '{key}' is missing or malformed; {_REEXPORT}")
    return v


def _from_header(header, data: memoryview, name: str) -> Netlist:
    if not isinstance(header, dict) or header.get("format") != _FORMAT_NAME:
        _fail(name, f"header does not describe an {_FORMAT_NAME} (format={header.get('format') if isinstance(header, dict) else None!r})")
    if header.get("version") != FORMAT_VERSION:
        _fail(name, f"header version {header.get('version')!r} disagrees with the preamble's {FORMAT_VERSION}; "
                    f"{_REEXPORT}")
    _field(header, "content_hash", str, name)
    enc_d = _field(header, "encoding", dict, name)
    classes = _field(header, "classes", list, name)
    bias = _field(header, "bias", list, name)
    sizes = _field(header, "layers", list, name)
    out_sizes = _field(header, "outputs", list, name)
    table = _field(header, "arrays", dict, name)
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        _fail(name, f"header field 'meta' must be an object; {_REEXPORT}")
    try:
        enc = ThermometerEncoding.from_dict(enc_d)
    except (KeyError, TypeError, ValueError) as e:
        _fail(name, f"header field 'encoding' is invalid ({e}); {_REEXPORT}")
    counts = {"ops": sum(sizes), "a": sum(sizes), "b": sum(sizes), "outputs": sum(out_sizes)}
    arrays = {}
    for key, (ftype, mtype) in _ARRAYS.items():
        ent = table.get(key)
        if not (isinstance(ent, dict) and ent.get("dtype") == ftype
                and all(isinstance(ent.get(k), int) and not isinstance(ent.get(k), bool) and ent.get(k) >= 0
                        for k in ("offset", "count"))):
            _fail(name, f"array table entry '{key}' is missing or malformed; {_REEXPORT}")
        if ent["count"] != counts[key]:
            _fail(name, f"array '{key}' has {ent['count']} entries, the layer/class sizes need {counts[key]}; "
                        f"{_REEXPORT}")
        size = np.dtype(ftype).itemsize * ent["count"]
        if ent["offset"] % 8 or ent["offset"] + size > len(data):
            _fail(name, f"array '{key}' lies outside the data section; {_REEXPORT}")
        arr = np.frombuffer(data, dtype=np.dtype(ftype), count=ent["count"], offset=ent["offset"])
        arrays[key] = arr if arr.dtype == np.dtype(mtype) else arr.astype(mtype)  # big-endian hosts convert
    cuts = np.cumsum(sizes)[:-1]
    layers = [Layer(o, a, b) for o, a, b in zip(np.split(arrays["ops"], cuts), np.split(arrays["a"], cuts),
                                                np.split(arrays["b"], cuts))] if sizes else []
    outputs = np.split(arrays["outputs"], np.cumsum(out_sizes)[:-1]) if out_sizes else []
    if len(bias) != len(out_sizes) or len(classes) != len(out_sizes):
        _fail(name, f"header lists {len(out_sizes)} output groups, {len(bias)} biases and {len(classes)} class "
                    f"names; {_REEXPORT}")
    if max(bias, default=0) >= 2**31:
        _fail(name, f"header field 'bias' is out of range; {_REEXPORT}")
    return Netlist(enc, layers, outputs, bias=np.array(bias, dtype=np.int32), class_names=list(classes), meta=meta)
