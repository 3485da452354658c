"""Files in and out: the one place where I/O and HDF5 failures become one-line errors naming
the file.

Writing (:func:`atomic_h5`): a file appears at its path only when whole. Small files are built
in memory and written with plain Python I/O (a full disk is then an ``OSError``, never HDF5's
crash on a failed flush), fsynced, and renamed into place; files too large for that are written
by HDF5 into a temp file after a free-space check. Every file likeflow writes ends with the
root attribute ``likeflow_complete = 1``.

Reading (:func:`open_h5`): HDF5 file locking is used where the file system has it and skipped
where it has none (NFS, Lustre: ``locking="best-effort"``); a file locked by a writer gives
"in use by another process". :func:`check_stored` refuses datasets whose declared size the file
cannot hold (unwritten rows that HDF5 would return as zeros, decompression bombs) and reads
that would not fit in memory, before anything is allocated.

Outputs (:func:`check_outputs`): checked before any work: the folder exists and is writable,
the path is not a folder, and no output is one of the command's inputs.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
import time
from contextlib import contextmanager

import h5py
import numpy as np

from .errors import FileError, FileIOError, LikeflowError

# Files up to this size are built in memory and written with Python I/O.
MEMORY_WRITE_MAX = 512 * 2 ** 20
# A compressed dataset may expand at most this much: float samples compress by 1-3x; a bomb by
# hundreds.
MAX_COMPRESSION_RATIO = 100.0
# Datasets declared this small are never refused on their compression ratio.
RATIO_CHECK_MIN_BYTES = 64 * 2 ** 20
COMPLETE_ATTR = "likeflow_complete"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (read in blocks: a file of any size)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def describe_os_error(e: BaseException) -> str:
    """A short reason for an I/O failure: the errno's text where there is one."""
    code = getattr(e, "errno", None)
    if code:
        return os.strerror(code)
    text = str(e)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EAGAIN):
        if f"errno = {code}" in text or os.strerror(code) in text:
            return os.strerror(code)
    return _first_line(e)


def free_bytes(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def available_memory() -> int:
    """Bytes of memory available to this process (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - not POSIX
        return 2 ** 62


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - some systems cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _output_folder(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(folder):
        raise FileIOError(path, f"cannot write: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise FileIOError(path, f"cannot write: the folder {folder} is not writable")
    return folder


@contextmanager
def atomic_h5(path: str | os.PathLike, *, size_hint: int | None = None):
    """An HDF5 file opened for writing that appears at ``path`` only when whole.

    ``size_hint`` (bytes, about) chooses the way: up to :data:`MEMORY_WRITE_MAX` the file is
    built in memory; above, HDF5 writes a temp file after checking the free space. Either way
    the result is fsynced and renamed into place; on any error or interrupt nothing is left.
    """
    path = os.fspath(path)
    folder = _output_folder(path)
    if os.path.isdir(path):
        raise FileIOError(path, "cannot write: it is a folder")
    if size_hint is not None and size_hint > MEMORY_WRITE_MAX:
        need = int(size_hint * 1.05) + 2 ** 20
        have = free_bytes(folder)
        if have < need:
            raise FileIOError(path, f"cannot write: about {need / 2**30:.2f} GB needed, "
                              f"{have / 2**30:.2f} GB free on its disk")
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp", dir=folder)
        os.close(fd)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs[COMPLETE_ATTR] = 0
                yield f
                f.attrs[COMPLETE_ATTR] = 1
            with open(tmp, "rb+") as g:
                os.fsync(g.fileno())
            _publish(tmp, path, folder)
        except BaseException as e:
            _remove(tmp)
            if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, LikeflowError):
                raise FileIOError(path, f"cannot write ({describe_os_error(e)})") from None
            raise
        return
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        yield f
        f.attrs[COMPLETE_ATTR] = 1
    write_bytes(path, buf.getbuffer(), folder=folder)


def write_bytes(path: str, data, *, folder: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync of the folder."""
    folder = folder or _output_folder(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp", dir=folder)
    except OSError as e:
        raise FileIOError(path, f"cannot write ({describe_os_error(e)})") from None
    try:
        with os.fdopen(fd, "wb") as g:
            g.write(data)
            g.flush()
            os.fsync(g.fileno())
        _publish(tmp, path, folder)
    except BaseException as e:
        _remove(tmp)
        if isinstance(e, OSError):
            raise FileIOError(path, f"cannot write ({describe_os_error(e)})") from None
        raise


def write_text(path: str, text: str) -> None:
    """A text output (JSON, logs) written atomically with the same errors as HDF5 files."""
    write_bytes(path, text.encode())


def _publish(tmp: str, path: str, folder: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is the user's usual
    os.replace(tmp, path)
    _fsync_folder(folder)


def _remove(tmp: str) -> None:
    try:
        os.remove(tmp)
    except OSError:
        pass


def open_h5(path: str | os.PathLike, error=FileIOError) -> h5py.File:
    """Open an HDF5 file for reading, with a clear error for every way that fails.

    ``error`` is the :class:`~likeflow.errors.FileError` class raised (sample, surrogate or
    plain I/O error).
    """
    path = os.fspath(path)

    def fail(problem: str) -> FileError:
        return error(path, problem)

    if not os.path.exists(path):
        raise fail("no such file")
    if os.path.isdir(path):
        raise fail("is a folder, not an HDF5 file")
    if not os.access(path, os.R_OK):
        raise fail("cannot be read (permission denied)")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as e:
        raise fail(f"cannot be read ({describe_os_error(e)})") from None
    if not is_h5:
        raise fail("not an HDF5 file")
    probe_h5(path, error)
    try:
        return h5py.File(path, "r", locking="best-effort")
    except (OSError, RuntimeError) as e:
        text = str(e).lower()
        if "unable to lock file" in text or "file locking" in text:
            raise fail("in use by another process (HDF5 file lock held): it may still be "
                       "being written; try again when that is done") from None
        raise fail(f"damaged or truncated HDF5 file ({_first_line(e)})") from None


def check_stored(path: str, ds: h5py.Dataset, error) -> None:
    """Refuse a dataset whose declared size the file does not hold, before reading it.

    - uncompressed and contiguous: the bytes stored must be the bytes declared;
    - chunked: every chunk must be written (HDF5 returns unwritten chunks as zeros: a file
      still being written, or a header that declares more than the file holds);
    - compressed: at most :data:`MAX_COMPRESSION_RATIO` expansion (a decompression bomb).
    """
    name = ds.name.lstrip("/")

    def fail(problem: str) -> FileError:
        return error(path, problem, name)

    shape = ds.shape or ()
    declared = int(np.prod(shape, dtype=np.float64) * ds.dtype.itemsize)
    if declared == 0 or ds.is_virtual or ds.external:
        return
    stored = ds.id.get_storage_size()
    if ds.chunks is None:
        if stored < declared:
            raise fail(f"declares {_size(declared)} but only {_size(stored)} are written: the "
                       "file is truncated or still being written")
        unwritten = _unwritten_share(path, ds.id.get_offset(), stored)
        if unwritten:
            raise fail(f"{unwritten:.0%} of its {_size(declared)} are not written yet (the "
                       "rest would read as zeros): the file is still being written or was "
                       "truncated")
    else:
        expected = int(np.prod([-(-s // c) for s, c in zip(shape, ds.chunks)], dtype=np.float64))
        written = ds.id.get_num_chunks()
        if written < expected:
            raise fail(f"only {written} of its {expected} chunks are written (the rest would "
                       "read as zeros): the file is truncated or still being written")
        if (ds.compression is not None and declared > RATIO_CHECK_MIN_BYTES
                and declared > MAX_COMPRESSION_RATIO * max(stored, 1)):
            raise fail(f"declares {_size(declared)} in {_size(stored)} on disk (compression "
                       f"ratio {declared / max(stored, 1):.0f} > {MAX_COMPRESSION_RATIO:.0f}): "
                       "refused as a likely decompression bomb")


def _unwritten_share(path: str, offset: int | None, size: int) -> float:
    """The share of the contiguous bytes [offset, offset + size) of ``path`` that are not on
    disk: beyond the file's end, or a hole of a sparse file (HDF5 allocates a contiguous
    dataset whole and a writer fills it in order; without file locking, routine on NFS and
    Lustre, a reader sees the unwritten rest as zeros). Only an unwritten tail counts. 0 where
    the file system cannot say."""
    if offset is None or size <= 0 or not hasattr(os, "SEEK_HOLE"):
        return 0.0
    end = offset + size
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0.0
    try:
        eof = os.fstat(fd).st_size
        gap = min(os.lseek(fd, offset, os.SEEK_HOLE) if offset < eof else offset, eof)
        if gap >= end:
            return 0.0
        # data after the gap: a hole in the middle (a file system that stores runs of zeros
        # as holes, as ZFS with compression does), not an unwritten tail
        try:
            after = os.lseek(fd, gap, os.SEEK_DATA) if gap < eof else eof
        except OSError:  # ENXIO: no data after the gap
            after = eof
    except OSError:
        return 0.0
    finally:
        os.close(fd)
    return (end - gap) / size if after >= end else 0.0


def check_memory(path: str, name: str, nbytes: float, error) -> None:
    """Refuse an allocation of ``nbytes`` for dataset ``name`` that memory cannot take."""
    have = available_memory()
    if nbytes > 0.8 * have:
        msg = (f"reading it needs about {_size(nbytes)} of memory, {_size(have)} are "
               "available: read a subsample with --max-samples")
        raise error(path, msg, name)


def _size(b: float) -> str:
    for unit, k in (("GB", 2 ** 30), ("MB", 2 ** 20), ("kB", 2 ** 10)):
        if b >= k:
            return f"{b / k:.1f} {unit}"
    return f"{int(b)} bytes"


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (also through links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs, inputs=()) -> None:
    """Before any work: every output can be written and none is an input.

    ``outputs`` and ``inputs`` are paths (None entries are skipped). Raises
    :class:`FileIOError` naming the path.
    """
    outs = [os.fspath(p) for p in outputs if p]
    ins = [os.fspath(p) for p in inputs if p]
    for i, out in enumerate(outs):
        for inp in ins:
            if same_file(out, inp):
                raise FileIOError(out, "the output is also an input of this command; "
                                  "writing it would destroy the input: choose another name")
        for other in outs[:i]:
            if same_file(out, other):
                raise FileIOError(out, "given as two different outputs")
        _output_folder(out)
        if os.path.isdir(out):
            raise FileIOError(out, "cannot write: it is a folder")
        if os.path.exists(out) and not os.access(out, os.W_OK):
            raise FileIOError(out, "cannot write: the file is read-only")


def check_output_folder(path: str | None) -> None:
    """A folder output (a report): it may not exist yet, but its parent must be writable."""
    if not path:
        return
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileIOError(path, "cannot write the report: a file of that name exists")
    target = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(target):
        raise FileIOError(path, f"cannot write the report: the folder {target} does not exist")
    if not os.access(target, os.W_OK):
        raise FileIOError(path, f"cannot write the report: {target} is not writable")


# The command line probes every HDF5 file it reads in a forked child first (probe_h5): set by
# the 'likeflow' entry point, off for the API.
_PROBE = {"on": False, "seconds": 10.0}
PROBE_DATA_BYTES = 64 * 2 ** 20   # the data the probe reads, per file (as declared)
PROBE_BLOCK_BYTES = 8 * 2 ** 20   # ... in reads of at most this much


def _probe_data(ds, budget: list[int]) -> None:
    """Read the leading rows of ``ds`` within ``budget`` (bytes left, updated), a block at a
    time; a chunk larger than the budget (decompressed whole by any read) is not touched."""
    item = ds.dtype.itemsize
    if ds.chunks is not None and int(np.prod(ds.chunks)) * item > budget[0]:
        return
    if ds.shape == () or ds.nbytes <= min(budget[0], PROBE_BLOCK_BYTES):
        ds[()]
        budget[0] -= ds.nbytes
        return
    row = max(1, int(np.prod(ds.shape[1:])) * item)
    step = max(1, PROBE_BLOCK_BYTES // row)
    if ds.chunks is not None:  # whole chunks per read
        step = max(ds.chunks[0], step // ds.chunks[0] * ds.chunks[0])
    start = 0
    while start < ds.shape[0] and budget[0] > 0:
        ds[start:start + step]
        budget[0] -= step * row
        start += step


def guard_reads(on: bool = True, seconds: float = 10.0) -> None:
    """Probe files before reading them (:func:`probe_h5`): the command line turns it on."""
    _PROBE.update(on=on, seconds=seconds)


def probe_h5(path, error) -> None:
    """Parse ``path`` in a forked child first: every object, every attribute, and the leading
    :data:`PROBE_DATA_BYTES` of the data (as declared, in blocks, so that the child's memory
    stays small whatever a file declares: a decompression bomb or a dataset with no chunk
    written is refused by the parent's size checks, not read in full here). A damaged file can
    make the HDF5 library loop forever or crash inside its C code, where no Python exception
    reaches; the child takes that risk, and a child that hangs (killed after a few seconds) or
    dies is a damaged file: ``error`` (a :class:`~likeflow.errors.FileError` class). POSIX
    only, and only when :func:`guard_reads` is on."""
    if not _PROBE["on"] or not hasattr(os, "fork") or not os.path.isfile(path):
        return
    pid = os.fork()
    if pid == 0:  # the child: parse, then leave without any cleanup of the parent's state
        try:
            with h5py.File(path, "r", locking=False) as f:
                budget = [PROBE_DATA_BYTES]

                def visit(name, obj):
                    for k in obj.attrs:
                        obj.attrs[k]
                    if isinstance(obj, h5py.Dataset) and obj.size and budget[0] > 0:
                        _probe_data(obj, budget)
                for k in f.attrs:
                    f.attrs[k]
                f.visititems(visit)
        except BaseException:  # noqa: BLE001 - a Python error is the parent's to report
            pass
        os._exit(0)
    deadline = time.monotonic() + _PROBE["seconds"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            problem = (f"damaged HDF5 file (the HDF5 library did not finish reading it in "
                       f"{_PROBE['seconds']:.0f} s)")
            break
        time.sleep(0.005)
    else:  # pragma: no cover
        return
    if done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    if done:
        problem = "damaged HDF5 file (the HDF5 library crashed reading it)"
    raise error(path, problem)


