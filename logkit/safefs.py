"""The one way logkit opens and creates files in a log directory.

Every process that can write a log directory can plant a name in it: a
symbolic link to /etc/shadow where a journal or a status file will be
created, a FIFO where a log file is expected.  A logkit run as root must
then refuse, not write through the link.  This module is the shared
mechanism (backends and the server call it; nothing here knows about log
formats):

* a joined name is opened relative to a descriptor of its directory
  (``openat``), with ``O_NOFOLLOW``, and the opened file's kind is checked
  (a regular file, or a FIFO where one is expected) before it is used;
* a temporary file gets an unpredictable name and ``O_CREAT | O_EXCL``, so
  nothing planted can be opened in its place;
* a file this module creates gets ``FILE_MODE`` (0640) and a directory
  ``DIR_MODE`` (0750) unless the caller says otherwise, exactly: the mode is
  set with fchmod/chmod after the create, so the umask does not matter;
* a directory that others can write without the sticky bit (mode o+w, no
  +t) is refused for writing with UnsafePath naming it: in one, anyone can
  rename or delete our files and put their own in their place; in one with
  the sticky bit (like /tmp), an existing file is written only if it
  belongs to us (or root), since anyone could have created it first;
* an OSError becomes a LogkitError that names the file and what is wrong:
  DiskFull for ENOSPC/EDQUOT, ReadOnlyFileSystem for EROFS (naming the
  directory), UnsafePath for a link or a wrong kind of file.

The directory path itself (e.g. a configured /var/log/app that is a link to
/srv/logs/app) is followed as given: it is the administrator's choice, and
only names *inside* it are guarded.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat

from logkit.errors import DiskFull, LogkitError, ReadOnlyFileSystem, UnsafePath

__all__ = ["FILE_MODE", "DIR_MODE", "REGULAR", "FIFO", "check_directory", "open_directory", "open_in",
           "open_file", "create_temporary", "replace_in", "unlink_in", "make_directories",
           "translate_error", "is_writing"]

FILE_MODE = 0o640
DIR_MODE = 0o750
REGULAR = "regular file"
FIFO = "named pipe"
_KIND_TEST = {REGULAR: stat.S_ISREG, FIFO: stat.S_ISFIFO}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


def is_writing(flags: int) -> bool:
    """True when open flags can change the file system (write, create, truncate)."""
    return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))


def _kind_of(mode: int) -> str:
    for name, test in ((REGULAR, stat.S_ISREG), (FIFO, stat.S_ISFIFO), ("directory", stat.S_ISDIR),
                       ("symbolic link", stat.S_ISLNK), ("socket", stat.S_ISSOCK),
                       ("character device", stat.S_ISCHR), ("block device", stat.S_ISBLK)):
        if test(mode):
            return name
    return "special file"


def _with_errno(err, code: int):
    """`err` (an OSError subclass made from its message alone, so str() is
    the message) carrying `code` as its errno, as callers of OSError expect."""
    err.errno = code                  # (setting strerror too would make str() "[Errno N] ...")
    return err


def translate_error(e: OSError, path: str, doing: str) -> LogkitError:
    """A LogkitError for `e`, met while `doing` (e.g. "create") `path`:
    DiskFull, ReadOnlyFileSystem (naming the directory), UnsafePath for a
    symbolic link, else a LogkitError with the system's words.  Returns it
    (the caller raises it, `from e` or `from None`)."""
    if isinstance(e, LogkitError):
        return e
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded"
        return _with_errno(DiskFull(f"cannot {doing} {path}: {what}; nothing was lost, retry when "
                                    "space returns"), code)
    if code == errno.EROFS:
        d = os.path.dirname(path) or "."
        return _with_errno(ReadOnlyFileSystem(f"cannot {doing} {path}: its directory {d} is on a "
                                              "read-only file system"), code)
    if code == errno.ELOOP:
        return UnsafePath(f"refusing to {doing} {path}: it is a symbolic link (logkit never follows a "
                          "link inside a log directory; someone who can write the directory may have "
                          "planted it)")
    return LogkitError(f"cannot {doing} {path}: {e.strerror or e}")


def check_directory(fd_or_path, name: str | None = None) -> os.stat_result:
    """Refuse (UnsafePath) a directory that others can write and that lacks
    the sticky bit; return its stat.  `fd_or_path`: an open descriptor or a
    path; `name`: how to call it in the error."""
    st = os.fstat(fd_or_path) if isinstance(fd_or_path, int) else os.stat(fd_or_path)
    where = name if name is not None else str(fd_or_path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{where} is not a directory (it is a {_kind_of(st.st_mode)})")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise UnsafePath(f"log directory {where} is writable by every user (mode "
                         f"{stat.S_IMODE(st.st_mode):04o}) and has no sticky bit: anyone could replace "
                         f"the log's files; fix with chmod o-w {where} (or chmod +t {where})")
    return st


def open_directory(path: str, writing: bool = True) -> int:
    """A descriptor (O_DIRECTORY, close-on-exec) on the directory `path`,
    checked with check_directory when `writing`.  The caller closes it."""
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except FileNotFoundError:
        raise LogkitError(f"directory {path} does not exist") from None
    except OSError as e:
        raise translate_error(e, path, "open the directory") from None
    if writing:
        try:
            check_directory(fd, path)
        except BaseException:
            os.close(fd)
            raise
    return fd


def open_in(dir_fd: int, name: str, flags: int, mode: int = FILE_MODE, kind: str = REGULAR,
            path: str | None = None, created: list | None = None) -> int:
    """Open `name` (one path component) in the directory `dir_fd` with
    O_NOFOLLOW and close-on-exec, and check that it is a `kind` (REGULAR or
    FIFO).  With O_CREAT, a file this call creates gets exactly `mode`
    (fchmod after the create: the umask does not apply); `created`, if
    given, gets True appended when it did.  `path` names the file in
    errors.  Raises FileNotFoundError (without O_CREAT) when the name does
    not exist, so callers can treat absence as before; UnsafePath for a
    link or another kind of file; DiskFull / ReadOnlyFileSystem /
    LogkitError for the rest."""
    if "/" in name or name in ("", ".", ".."):
        raise UnsafePath(f"{path or name}: {name!r} is not a plain file name inside the log directory")
    where = path or name
    doing = "create" if flags & os.O_CREAT else ("open for writing" if is_writing(flags) else "open")
    # O_NONBLOCK for the open itself: a FIFO planted where a regular file is
    # expected would otherwise block the open until someone opens its other
    # end; the kind check below refuses it.  Cleared again afterwards unless
    # the caller asked for it.
    base = flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK
    made = False
    try:
        if flags & os.O_CREAT and not flags & os.O_EXCL:
            # Create exclusively first, so we know whether to set the mode.
            try:
                fd = os.open(name, base | os.O_EXCL, mode, dir_fd=dir_fd)
                made = True
            except FileExistsError:
                fd = os.open(name, base & ~os.O_CREAT, mode, dir_fd=dir_fd)
        else:
            fd = os.open(name, base, mode, dir_fd=dir_fd)
            made = bool(flags & os.O_CREAT)
    except FileNotFoundError:
        if flags & os.O_CREAT:
            raise LogkitError(f"cannot create {where}: its directory does not exist") from None
        raise
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno == errno.ENXIO:
            if kind == FIFO:
                raise                             # a FIFO with no reader: the caller's business
            # Only a FIFO (or a socket or device) gives ENXIO on open.
            try:
                found = _kind_of(os.lstat(name, dir_fd=dir_fd).st_mode)
            except OSError:
                found = "special file"
            raise UnsafePath(f"{where} is a {found}, not a {kind}: refusing to use it") from None
        raise translate_error(e, where, doing) from None
    try:
        st = os.fstat(fd)
        test = _KIND_TEST.get(kind)
        if test is not None and not test(st.st_mode):
            raise UnsafePath(f"{where} is a {_kind_of(st.st_mode)}, not a {kind}: refusing to use it")
        if not made and is_writing(flags) and st.st_uid not in (os.geteuid(), 0):
            # In a directory every user can write (sticky, or it was refused
            # above), a file of another user may have been planted before we
            # created ours: we would write the log into a file they own.
            if os.fstat(dir_fd).st_mode & stat.S_IWOTH:
                raise UnsafePath(f"{where} belongs to uid {st.st_uid}, in a directory every user can "
                                 "write: it may have been planted there; refusing to write it")
        if not flags & os.O_NONBLOCK:
            os.set_blocking(fd, True)
        if made:
            os.fchmod(fd, mode)
            if created is not None:
                created.append(True)
    except BaseException:
        os.close(fd)
        if made:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except OSError:
                pass
        raise
    return fd


def open_file(path: str, flags: int, mode: int = FILE_MODE, kind: str = REGULAR,
              created: list | None = None) -> int:
    """open_in for a full path: its directory is opened (and, when the flags
    write, checked with check_directory), then the last component is opened
    relative to it with O_NOFOLLOW and checked to be a `kind`."""
    path = os.path.abspath(os.fspath(path))
    d, name = os.path.split(path)
    dfd = open_directory(d, writing=is_writing(flags))
    try:
        return open_in(dfd, name, flags, mode, kind, path=path, created=created)
    finally:
        os.close(dfd)


def create_temporary(dir_fd: int, stem: str, mode: int = FILE_MODE, path_dir: str = "") -> tuple[int, str]:
    """A new regular file in `dir_fd`, named ``.<stem>.<pid>.<random>.tmp``
    (nobody can plant that name in advance), created with O_EXCL and
    O_NOFOLLOW and given exactly `mode`.  Returns (fd, name); the caller
    unlinks it (unlink_in) or renames it into place (replace_in)."""
    name = f".{stem}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    fd = open_in(dir_fd, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode,
                 path=os.path.join(path_dir, name) if path_dir else name)
    os.fchmod(fd, mode)
    return fd, name


def replace_in(dir_fd: int, src: str, dst: str, path: str | None = None) -> None:
    """rename(2) `src` over `dst`, both names in `dir_fd` (a link planted at
    `dst` is replaced, never followed)."""
    try:
        os.replace(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:
        raise translate_error(e, path or dst, "replace") from None


def unlink_in(dir_fd: int, name: str) -> None:
    """Remove `name` from `dir_fd` if it is there (never raises for absence)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def make_directories(path: str, mode: int = DIR_MODE) -> None:
    """Create `path` and its missing parents; each directory created gets
    exactly `mode` (chmod after mkdir: the umask does not apply).  Existing
    directories are left as they are."""
    path = os.path.abspath(os.fspath(path))
    missing = []
    p = path
    while not os.path.isdir(p):
        if os.path.lexists(p):
            raise LogkitError(f"cannot create directory {path}: {p} exists and is not a directory")
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue
        except OSError as e:
            raise translate_error(e, d, "create the directory") from None
        try:
            fd = os.open(d, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
        except OSError as e:
            raise translate_error(e, d, "open the new directory") from None
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
