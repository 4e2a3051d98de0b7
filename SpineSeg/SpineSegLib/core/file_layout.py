"""Where the voxel data of an image file lie and how many bytes its header promises.

The headers of NIfTI-1/NIfTI-2 (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``: raw or gzip encoding, data
attached or in one detached file) and MetaImage (``.mha``, ``.mhd``: ``ElementDataFile`` LOCAL or one file,
raw or ``CompressedData``) are parsed just far enough to give a :class:`DataLayout`: the file holding the data, the
byte where the data (or the compressed stream) start, the encoding and the decoded size the header describes, plus
two facts ITK hides: the spacing as written (ITK reads a NIfTI pixdim of 0 as 1 and a negative one as a flip) and
the type of a NIfTI file's float voxels (ITK's NIfTI reader replaces NaN and infinite values by 0).
:mod:`SpineSegLib.core.integrity` compares all that with the file. Anything these parsers do not know for certain (an
Analyze/NIfTI header pair, a NRRD file list or skip, ASCII data, a non-byte voxel type) gives ``None``: no check,
never a false refusal.

Console use::

    from SpineSegLib.core.file_layout import data_layout
    data_layout("image.nii.gz")
    # DataLayout(data_file=PosixPath('image.nii.gz'), offset=0, data_bytes=69730304, encoding='gzip', prefix=352,
    #            ..., spacing=(0.703125, 0.703125, 2.5), float_type='')
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from SpineSegLib.core.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
#: the most header bytes read to find the end of a NRRD / MetaImage text header
MAX_TEXT_HEADER = 1 << 20
#: ``zlib.decompressobj`` window bits: gzip wrapper only, or zlib and gzip detected from the stream's start
WBITS = {"gzip": 31, "zlib": 47}

NRRD_TYPE_BYTES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort",
                     "unsigned short", "unsigned short int", "uint16", "uint16_t"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t",
                     "float"), 4),
    **dict.fromkeys(("longlong", "long long", "long long int", "signed long long", "signed long long int",
                     "int64", "int64_t", "ulonglong", "unsigned long long", "unsigned long long int", "uint64",
                     "uint64_t", "double"), 8),
}
#: MetaIO's MET_ValueTypeSize (``MET_LONG`` is 4 bytes in MetaIO)
META_TYPE_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                   "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                   "MET_DOUBLE": 8}


@dataclass(frozen=True)
class DataLayout:
    """Where an image file's voxel data lie (see the module docstring)."""

    data_file: Path            # the file holding the data: the image file itself, or a detached data file
    offset: int                # byte of ``data_file`` where the data, or their compressed stream, start
    data_bytes: int            # decoded bytes of voxel data the header describes
    encoding: str              # "raw", "gzip" (gzip wrapper) or "zlib" (MetaImage: zlib, or gzip, wrapper)
    prefix: int = 0            # decoded bytes before the voxels inside the stream (a .nii.gz's header)
    stream_bytes: int | None = None  # compressed bytes the header announces (MetaImage CompressedDataSize)
    at_end: bool = False       # raw data occupy the end of ``data_file`` (NRRD byte skip -1, HeaderSize -1)
    spacing: tuple = ()        # the voxel spacing as the header states it (ITK silently replaces a zero one)
    float_type: str = ""       # numpy type of a NIfTI file's float voxels: ITK's NIfTI reader sets NaN/Inf to 0

    @property
    def decoded_bytes(self) -> int:
        """Every byte the stream must decode to: the prefix and the voxel data."""
        return self.prefix + self.data_bytes


def data_layout(path) -> DataLayout | None:
    """The :class:`DataLayout` of ``path`` (a NIfTI, NRRD or MetaImage file), or ``None`` when its format or
    variant is not one this module checks. Raises :class:`InputError` when a compressed file ends inside its
    own header."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            return _nifti_layout(path)
        if name.endswith((".nrrd", ".nhdr")):
            return _nrrd_layout(path)
        if name.endswith((".mha", ".mhd")):
            return _meta_layout(path)
    except (OSError, ValueError, UnicodeDecodeError, struct.error):
        return None
    return None


def inflate_head(path: Path, offset: int, count: int, encoding: str) -> tuple[bytes, bool]:
    """The first ``count`` decoded bytes of the compressed stream at ``offset`` of ``path``, and whether the stream
    was complete as far as read (``False``: the file ended, or the data were corrupt, before ``count`` bytes)."""
    decoder = zlib.decompressobj(WBITS[encoding])
    out = bytearray()
    with open(path, "rb") as f:
        f.seek(offset)
        while len(out) < count:
            block = decoder.unconsumed_tail or f.read(64 * 1024)
            if not block:
                return bytes(out), decoder.eof
            try:
                out += decoder.decompress(block, count - len(out))
            except zlib.error:
                return bytes(out), False
            if decoder.eof:
                break
    return bytes(out[:count]), True


# -- NIfTI ---------------------------------------------------------------------------------------------------
def _nifti_layout(path: Path) -> DataLayout | None:
    with open(path, "rb") as f:
        compressed = f.read(2) == GZIP_MAGIC
    if compressed:
        head, complete = inflate_head(path, 0, 540, "gzip")
        if len(head) < 348 and not complete:
            raise InputError(f"{path}: truncated or corrupt file (the gzip stream stops inside the NIfTI header: "
                             f"{len(head)} of at least 348 bytes decode)")
    else:
        with open(path, "rb") as f:
            head = f.read(540)
    parsed = _nifti_header(head)
    if parsed is None:
        return None
    vox_offset, data_bytes, spacing, float_type = parsed
    if compressed:
        return DataLayout(path, 0, data_bytes, "gzip", prefix=vox_offset, spacing=spacing, float_type=float_type)
    return DataLayout(path, vox_offset, data_bytes, "raw", spacing=spacing, float_type=float_type)


def _nifti_header(head: bytes) -> tuple[int, int, tuple, str] | None:
    """``(vox_offset, voxel data bytes, spacing, float type)`` of a single-file NIfTI-1/NIfTI-2 header, else
    ``None``."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348 and head[344:347] == b"n+1":
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            pixdim = struct.unpack(endian + "8f", head[76:108])
            vox_offset, minimum = int(struct.unpack(endian + "f", head[108:112])[0]), 348
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540 and head[4:7] == b"n+2":
            dims = struct.unpack(endian + "8q", head[16:80])
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            pixdim = struct.unpack(endian + "8d", head[104:168])
            vox_offset, minimum = struct.unpack(endian + "q", head[168:176])[0], 540
            break
    else:
        return None
    ndim = dims[0]
    if not 1 <= ndim <= 7 or bitpix <= 0 or bitpix % 8 or vox_offset < minimum:
        return None
    voxels = 1
    for d in dims[1:ndim + 1]:
        voxels *= max(int(d), 1)
    float_type = {16: "f4", 32: "f4", 64: "f8", 1792: "f8"}.get(datatype, "")   # float32/64, complex64/128
    return (vox_offset, voxels * (bitpix // 8), tuple(float(v) for v in pixdim[1:min(ndim, 3) + 1]),
            endian + float_type if float_type else "")


# -- text headers: NRRD and MetaImage ---------------------------------------------------------------------
def _text_header(path: Path, is_last_line) -> tuple[list[str], int] | None:
    """The header lines of ``path`` up to the blank line / the line ``is_last_line`` accepts (included), and the
    byte offset just after them; ``None`` when no such end is found in the first MB (then the whole file is header,
    as in a detached ``.nhdr``, if it is that short)."""
    with open(path, "rb") as f:
        raw = f.read(MAX_TEXT_HEADER)
    lines, pos = [], 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end].decode("latin-1").rstrip("\r\n")
        pos = end
        if is_last_line(line):
            lines.append(line)
            return lines, pos
        lines.append(line)
    return (lines, pos) if len(raw) < MAX_TEXT_HEADER else None


def _nrrd_layout(path: Path) -> DataLayout | None:
    found = _text_header(path, lambda line: line == "")
    if found is None or not found[0] or not found[0][0].startswith("NRRD000"):
        return None
    lines, header_end = found
    fields = {}
    for line in lines[1:]:
        if line.startswith("#") or ":=" in line or ": " not in line:
            continue
        key, value = line.split(": ", 1)
        fields[key.strip().lower().replace(" ", "")] = value.strip()
    type_bytes = NRRD_TYPE_BYTES.get(fields.get("type", "").lower())
    encoding = {"raw": "raw", "gzip": "gzip", "gz": "gzip"}.get(fields.get("encoding", "").lower())
    if type_bytes is None or encoding is None or int(fields.get("lineskip", 0)) != 0:
        return None
    byte_skip = int(fields.get("byteskip", 0))
    if byte_skip < -1 or (encoding == "gzip" and byte_skip != 0):
        return None
    data_bytes = type_bytes
    for size in fields.get("sizes", "").split():
        data_bytes *= int(size)
    data_file, offset = path, header_end
    if "datafile" in fields:
        name = fields["datafile"]
        if name.startswith("LIST") or len(name.split()) > 1:
            return None               # a list or a numbered pattern of files: not checked
        data_file, offset = (path.parent / name), 0
    return DataLayout(data_file, offset + max(byte_skip, 0), data_bytes, encoding, at_end=byte_skip == -1,
                      spacing=_nrrd_spacing(fields))


def _nrrd_spacing(fields: dict) -> tuple:
    """The spacings of the space axes: the lengths of the ``space directions`` vectors, or ``spacings``."""
    if "spacedirections" in fields:
        vectors = re.findall(r"\(([^)]*)\)", fields["spacedirections"])
        return tuple(math.sqrt(sum(float(c) ** 2 for c in v.split(","))) for v in vectors)
    return tuple(float(v) for v in fields.get("spacings", "").split() if v.lower() != "nan")


def _meta_layout(path: Path) -> DataLayout | None:
    found = _text_header(path, lambda line: line.split("=", 1)[0].strip().lower() == "elementdatafile")
    if found is None:
        return None
    lines, header_end = found
    fields = {}
    for line in lines:
        if "=" in line:
            key, value = line.split("=", 1)
            fields[key.strip().lower()] = value.strip()
    name = fields.get("elementdatafile")
    type_bytes = META_TYPE_BYTES.get(fields.get("elementtype", "").upper())
    if not name or type_bytes is None or fields.get("binarydata", "true").lower() == "false":
        return None
    data_bytes = type_bytes * int(fields.get("elementnumberofchannels", 1))
    dims = [int(v) for v in fields.get("dimsize", "").split()]
    if not dims or len(dims) != int(fields.get("ndims", len(dims))):
        return None
    for size in dims:
        data_bytes *= size
    spacing = tuple(float(v) for v in fields.get("elementspacing", fields.get("elementsize", "")).split())
    compressed = fields.get("compresseddata", "false").lower() == "true"
    stream = int(fields["compresseddatasize"]) if compressed and "compresseddatasize" in fields else None
    if name.lower() == "local":
        return DataLayout(path, header_end, data_bytes, "zlib" if compressed else "raw", stream_bytes=stream,
                          spacing=spacing)
    if name.upper().startswith("LIST") or "%" in name or len(name.split()) > 1:
        return None                   # a list or a numbered pattern of files: not checked
    skip = int(fields.get("headersize", 0))
    return DataLayout(path.parent / name, max(skip, 0), data_bytes, "zlib" if compressed else "raw",
                      stream_bytes=stream, at_end=skip == -1, spacing=spacing)
