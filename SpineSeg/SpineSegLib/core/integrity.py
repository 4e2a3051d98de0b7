"""Refuse image files that do not hold all the data their header describes ("truncated or corrupt file").

ITK reads a ``.nii.gz`` cut short (a copy interrupted by a full disk) without complaint and fills the missing voxels
with zeros; it refuses a short NRRD or MetaImage with a message about ``fread`` or ``M_ReadElementsData``. Here every
NIfTI, NRRD and MetaImage file is checked against the layout its header describes
(:mod:`SpineSegLib.core.file_layout`), and a file that fails is refused with one line naming what was expected and
what was found::

    scan.nii.gz: truncated or corrupt file (the gzip stream ends after 100 kB, before its end marker: it decodes
    to 211 kB of the 69.7 MB the header describes)

The checks, cheapest first:

* **the header's spacing** must be positive (ITK would read a NIfTI pixdim of 0 as 1 mm, a negative one as a
  flip): "zero or negative voxel spacing in its header";
* **raw data** (``.nii``, raw NRRD, raw MetaImage, attached or detached): the file size against the header, before
  ITK reads anything;
* **compressed data**, before reading: MetaImage's ``CompressedDataSize`` against the bytes present, and the gzip
  trailer's size field (ISIZE, the decoded size mod 2^32) against the header;
* **compressed data**, after ITK read it: the trailer's checksum (gzip CRC-32, zlib Adler-32) against the
  checksum of what ITK decoded, i.e. the voxel buffer as read (plus, for a ``.nii.gz``, the NIfTI header bytes
  before it). A match proves that the stream ends with its own trailer and that every byte decoded as written, at
  the cost of one checksum pass over the voxels in memory (about 30 ms for LIDC-IDRI-0001's 70 MB, where
  decoding the stream a second time would take 260 ms);
* when a quick check fails (or does not apply: ITK rescaled or byte-swapped the voxels, a multi-member gzip file),
  the **whole stream is decoded** here, in blocks, counting bytes and keeping none, and the file is refused only if
  the stream breaks off before its end marker, is damaged (a checksum zlib rejects), or decodes to fewer bytes
  than the header describes. Bytes after the data are ignored, as ITK ignores them.
* **NaN and infinite floats in a NIfTI file**: ITK's NIfTI reader replaces them by 0, so they are counted in the
  file's data (raw: a memory map read a block at a time; gzip: the full decode, which the changed voxels trigger,
  counts them as it goes) and refused like the NaN that other readers pass on (:func:`nonfinite_error`).

Console use::

    from SpineSegLib.core.integrity import check_before_read, check_after_read
    layout = check_before_read("scan.nii.gz")          # InputError for a file cut short, else its DataLayout
    img = sitk.ReadImage("scan.nii.gz")
    check_after_read("scan.nii.gz", layout, sitk.GetArrayViewFromImage(img))
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from SpineSegLib.core.errors import InputError
from SpineSegLib.core.file_layout import GZIP_MAGIC, WBITS, DataLayout, data_layout, inflate_head

#: compressed bytes read per step of a full decode, and the most decoded bytes produced per step
BLOCK = 1 << 20
OUT_BLOCK = 1 << 22


def check_before_read(path) -> DataLayout | None:
    """The checks that need no voxels: sizes of raw data, of MetaImage compressed data, the gzip size field.
    Raises :class:`InputError` for a truncated or corrupt file. Returns the layout of a compressed file for
    :func:`check_after_read`, ``None`` when nothing is left to check (raw data, a stream already decoded in
    full here, a format that is not checked)."""
    path = Path(path)
    layout = data_layout(path)
    if layout is None:
        return None
    if not all(math.isfinite(s) and s > 0 for s in layout.spacing):
        raise InputError(f"{path}: zero or negative voxel spacing in its header "
                         f"({' x '.join(f'{s:g}' for s in layout.spacing)} mm); every spacing must be positive")
    if not layout.data_file.is_file():
        raise InputError(f"{path}: its data file {layout.data_file.name} (named in its header) does not exist")
    available = layout.data_file.stat().st_size - layout.offset
    where = "the file" if layout.data_file == path else f"its data file {layout.data_file.name}"
    if layout.encoding == "raw":
        if available < layout.data_bytes:
            expected, found = _sizes(layout.data_bytes, available)
            raise _corrupt(path, f"the header describes {expected} of voxel data, {where} holds {found}")
        if layout.float_type:
            _refuse_nonfinite(path, layout, _count_nonfinite_raw(layout))
        return None
    if layout.stream_bytes is not None and available < layout.stream_bytes:
        expected, found = _sizes(layout.stream_bytes, available)
        raise _corrupt(path, f"the header announces {expected} of compressed data, {where} holds {found}")
    trailer = _gzip_trailer(layout)
    if trailer is not None and trailer[1] != layout.decoded_bytes % 2**32:
        check_stream(path, layout)    # says what is wrong, or accepts a multi-member or padded stream
        return None
    return layout


def check_after_read(path, layout: DataLayout | None, voxels: np.ndarray) -> None:
    """Compare the trailer checksum of a compressed file with ``voxels`` (the buffer ITK decoded, e.g.
    ``sitk.GetArrayViewFromImage``); on a mismatch decode the whole stream and raise :class:`InputError` if it is
    truncated or corrupt."""
    if layout is None:
        return
    if not (voxels.nbytes == layout.data_bytes and voxels.flags.c_contiguous and _checksum_matches(layout, voxels)):
        check_stream(Path(path), layout)


def check_stream(path: Path, layout: DataLayout) -> None:
    """Decode the whole compressed stream of ``layout`` (in blocks, keeping nothing) and raise
    :class:`InputError` unless it ends with its end marker and decodes to the bytes the header describes."""
    counter = _NonFinite(layout) if layout.float_type else None
    decoded, read, problem = _inflate_all(layout, counter)
    kind = "gzip stream" if layout.encoding == "gzip" else "compressed data stream"
    if layout.data_file != path:
        kind += f" of its data file {layout.data_file.name}"
    expected, found = _sizes(layout.decoded_bytes, decoded)
    if problem == "truncated":
        raise _corrupt(path, f"the {kind} ends after {_size(read)}, before its end marker: it decodes to "
                             f"{found} of the {expected} the header describes")
    if problem:
        raise _corrupt(path, f"the {kind} is damaged after {_size(decoded)} of decoded data: {problem}")
    if decoded < layout.decoded_bytes:
        raise _corrupt(path, f"the header describes {expected} of data, the {kind} holds {found}")
    if counter is not None:
        _refuse_nonfinite(path, layout, counter.count)


def nonfinite_error(path, bad: int, total: int) -> InputError:
    """The one refusal of NaN / infinite voxels (here for a NIfTI file's float data, which ITK's NIfTI reader
    turns into zeros; :func:`SpineSegLib.core.image.read_image` for what ITK returns)."""
    return InputError(f"{path}: {bad:,} of its {total:,} voxels are NaN or infinite; "
                      f"replace them (e.g. with the background value) before using the image")


def _refuse_nonfinite(path, layout: DataLayout, bad: int) -> None:
    if bad:
        raise nonfinite_error(path, bad, layout.data_bytes // np.dtype(layout.float_type).itemsize)


def _count_nonfinite_raw(layout: DataLayout) -> int:
    """NaN / infinite values among the raw float voxels of ``layout``, read a block at a time."""
    dtype = np.dtype(layout.float_type)
    if layout.data_bytes < dtype.itemsize:
        return 0
    values = np.memmap(layout.data_file, dtype=dtype, mode="r", offset=layout.offset,
                       shape=(layout.data_bytes // dtype.itemsize,))
    step = OUT_BLOCK // dtype.itemsize
    return sum(int(len(values[k:k + step]) - np.count_nonzero(np.isfinite(values[k:k + step])))
               for k in range(0, len(values), step))


class _NonFinite:
    """Counts NaN / infinite float voxels in decoded blocks as they pass (skipping the NIfTI header)."""

    def __init__(self, layout: DataLayout):
        self.dtype = np.dtype(layout.float_type)
        self.skip, self.left = layout.prefix, layout.data_bytes
        self.carry = b""
        self.count = 0

    def __call__(self, block: bytes) -> None:
        cut = min(self.skip, len(block))
        self.skip -= cut
        block = block[cut:cut + self.left]
        self.left -= len(block)
        data = self.carry + block
        usable = len(data) - len(data) % self.dtype.itemsize
        values = np.frombuffer(data, self.dtype, usable // self.dtype.itemsize)
        self.count += int(values.size - np.count_nonzero(np.isfinite(values)))
        self.carry = data[usable:]


def describe_read_failure(path) -> None:
    """After ITK failed to read ``path``: raise the precise :class:`InputError` if the file is truncated or
    corrupt (ITK's own message names ``fread`` or zlib); return when no such problem is found."""
    layout = check_before_read(path)
    if layout is not None:
        check_stream(Path(path), layout)


# -- checksums ------------------------------------------------------------------------------------------------
def _stream_end(layout: DataLayout) -> int:
    if layout.stream_bytes is not None:
        return layout.offset + layout.stream_bytes
    return layout.data_file.stat().st_size


def _read_at(file: Path, offset: int, count: int) -> bytes:
    with open(file, "rb") as f:
        f.seek(offset)
        return f.read(count)


def _is_gzip(layout: DataLayout) -> bool:
    return layout.encoding == "gzip" or _read_at(layout.data_file, layout.offset, 2) == GZIP_MAGIC


def _gzip_trailer(layout: DataLayout) -> tuple[int, int] | None:
    """``(CRC-32, ISIZE)`` from the last 8 bytes of a gzip stream, ``None`` for a zlib stream."""
    if not _is_gzip(layout):
        return None
    end = _stream_end(layout)
    if end - layout.offset < 18:      # shorter than a gzip header and trailer: cannot match
        return (-1, -1)
    return struct.unpack("<II", _read_at(layout.data_file, end - 8, 8))


def _checksum_matches(layout: DataLayout, voxels: np.ndarray) -> bool:
    prefix = b""
    if layout.prefix:
        prefix, _ = inflate_head(layout.data_file, layout.offset, layout.prefix, layout.encoding)
        if len(prefix) < layout.prefix:
            return False
    trailer = _gzip_trailer(layout)
    if trailer is not None:
        crc = zlib.crc32(voxels, zlib.crc32(prefix))
        return (crc, layout.decoded_bytes % 2**32) == trailer
    end = _stream_end(layout)
    if end - layout.offset < 6:
        return False
    (stored,) = struct.unpack(">I", _read_at(layout.data_file, end - 4, 4))
    return zlib.adler32(voxels, zlib.adler32(prefix)) == stored


# -- the full decode --------------------------------------------------------------------------------------
def _inflate_all(layout: DataLayout, visit=None) -> tuple[int, int, str | None]:
    """Decode the stream of ``layout`` block by block, passing each decoded block to ``visit`` (if given) and
    keeping none: ``(decoded bytes, compressed bytes read, problem)`` with problem ``None`` (complete),
    ``"truncated"`` (the input ended before the end marker) or zlib's complaint. Gzip members that follow one
    another are decoded in turn; other bytes after the end are ignored."""
    decoder = zlib.decompressobj(WBITS[layout.encoding])
    decoded = read = 0
    end = _stream_end(layout)
    with open(layout.data_file, "rb") as f:
        f.seek(layout.offset)
        pending = b""
        while True:
            if not pending:
                pending = f.read(min(BLOCK, max(end - layout.offset - read, 0)))
                read += len(pending)
                if not pending:
                    return decoded, read, "truncated"
            try:
                out = decoder.decompress(pending, OUT_BLOCK)
            except zlib.error as exc:
                return decoded, read, _zlib_reason(exc)
            decoded += len(out)
            if visit is not None:
                visit(out)
            pending = decoder.unconsumed_tail
            if decoder.eof:
                rest = decoder.unused_data
                if len(rest) < 2:
                    more = f.read(2 - len(rest))
                    read, rest = read + len(more), rest + more
                if layout.encoding != "gzip" or not rest.startswith(GZIP_MAGIC):
                    return decoded, read, None
                decoder, pending = zlib.decompressobj(WBITS["gzip"]), rest


def _zlib_reason(exc: zlib.error) -> str:
    text = str(exc).split(": ", 1)[-1]
    if "incorrect data check" in text:
        return "its checksum does not match the data (incorrect data check)"
    if "incorrect length check" in text:
        return "its length field does not match the data (incorrect length check)"
    return text


# -- messages -------------------------------------------------------------------------------------------------
def _corrupt(path, detail: str) -> InputError:
    return InputError(f"{path}: truncated or corrupt file ({detail})")


def _size(n: int) -> str:
    """``100 kB``, ``69.7 MB``: three significant digits, decimal units."""
    if n < 1000:
        return f"{n} bytes"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if n < scale * 1000 or unit == "GB":
            return f"{n / scale:.3g} {unit}"
    raise AssertionError


def _sizes(expected: int, found: int) -> tuple[str, str]:
    """Both sizes rounded, or both exact when rounding would make them look equal."""
    a, b = _size(expected), _size(found)
    return (a, b) if a != b else (f"{expected:,} bytes", f"{found:,} bytes")
