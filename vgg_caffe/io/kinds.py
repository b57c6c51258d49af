"""Which kind of file a weights path holds: Caffe's HDF5 layout (by suffix or signature), a
binary caffemodel, or one of the files people pass by mistake (a .solverstate, safetensors, a
torch file), which are refused with the conversion to run instead.
"""
import os

from ..errors import CaffeError
from . import wire

HDF5_SUFFIXES = (".h5", ".hdf5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pt", ".pth")
SOLVERSTATE_SUFFIX = ".solverstate"
_ZIP_MAGIC = b"PK\x03\x04"
_SNIFF_BYTES = 4096



def is_hdf5(path):
    path = os.fspath(path)
    if path.lower().endswith(HDF5_SUFFIXES):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(8) == HDF5_SIGNATURE
    except OSError:
        return False


def _looks_like_solverstate(head):
    """True when the first field of `head` is a SolverState's, never a NetParameter's: field 1
    as a varint (SolverState.iter; NetParameter.name is a string), or field 2 holding the text
    of a weights file name (SolverState.learned_net; NetParameter's field 2 is a V1 layer)."""
    r = wire.Reader(memoryview(head), "")
    try:
        number, wire_type, start, stop, _ = r.field(0, len(head))
    except CaffeError:
        return False
    if number == 1 and wire_type == wire.VARINT:
        return True
    if number == 2 and wire_type == wire.LENGTH:
        try:
            text = bytes(head[start:stop]).decode("utf-8")
        except UnicodeDecodeError:
            return False
        return text.isprintable() and text.lower().endswith((".caffemodel", ".h5", ".hdf5"))
    return False


def foreign_kind(path, head, size):
    """'safetensors', 'PyTorch' or 'solverstate' when the file (first bytes `head`, `size`
    bytes in all) is one of those rather than a .caffemodel; None otherwise. By content first
    (a safetensors file starts with its header's length as a little-endian uint64 and then '{';
    torch.save writes a zip archive, or a pickle before PyTorch 1.6), then by suffix."""
    lower = os.fspath(path).lower()
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head.startswith(_ZIP_MAGIC) or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return "PyTorch"
    if lower.endswith(SOLVERSTATE_SUFFIX) or _looks_like_solverstate(head):
        return "solverstate"
    if lower.endswith(SAFETENSORS_SUFFIX):
        return "safetensors"
    if lower.endswith(TORCH_SUFFIXES):
        return "PyTorch"
    return None


def _refuse_foreign(path):
    """Raise a CaffeError naming the kind of file when `path` is not Caffe's weights."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise CaffeError(f"{path}: cannot open ({e.strerror or e})") from None
    kind = foreign_kind(path, head, size)
    if kind is None:
        return
    if kind == "solverstate":
        raise CaffeError(f"{path} is a .solverstate (the solver's iteration and momentum history), not a "
                         ".caffemodel or Caffe HDF5 file: weights are the PREFIX_iter_N.caffemodel written "
                         f"beside it; to continue that training run use `solve --snapshot {path}`")
    suffixes = (SAFETENSORS_SUFFIX,) if kind == "safetensors" else TORCH_SUFFIXES
    rename = "" if path.lower().endswith(suffixes) else \
        f" (give it a {suffixes[-1]} name first: the converter picks the format by suffix)"
    raise CaffeError(f"{path} is a {kind} file, not a .caffemodel or Caffe HDF5 file; convert it with "
                     f"tools/convert_caffemodel.py {path} OUT.caffemodel{rename}")
