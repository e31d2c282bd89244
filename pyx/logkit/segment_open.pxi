# Opening a segment (included by _segment.pyx): the bodies of Segment.create,
# open, format and from_buffer, and the attach every one of them ends in
# (the region's bounds, the header check, the SIGBUS watch).  The layout they
# create and check is docs/format.md, "The header".


cdef object _segment_attach(owner, Py_ssize_t offset, length, bint readonly, path, mm, bint check):
    cdef Segment seg = Segment.__new__(Segment)
    PyObject_GetBuffer(owner, &seg._view, PyBUF_SIMPLE if readonly else PyBUF_WRITABLE)
    seg._has_view = True
    seg._owner = owner
    seg._mmap = mm
    seg.readonly = readonly
    seg.path = path
    cdef Py_ssize_t total = seg._view.len
    if length is None:
        length = total - offset
    cdef Py_ssize_t n = length
    where = path if path is not None else f"region at offset {offset}"
    if offset < 0 or n < 0 or offset + n > total:
        seg.close()
        raise InvalidArgument(f"{where}: region {offset}+{n} lies outside the {total}-byte buffer")
    if offset % 8 or (<size_t>seg._view.buf) % 8:
        seg.close()
        raise InvalidArgument(f"{where}: region offset {offset} is not 8-byte aligned")
    if n < LK_MIN_REGION:
        seg.close()
        err = SegmentDamaged if check else InvalidArgument
        raise err(f"{where}: {n} bytes is too small for a segment (minimum {LK_MIN_REGION})")
    if <uint64_t>n > LK_MAX_REGION:
        seg.close()
        raise InvalidArgument(f"{where}: {n} bytes is larger than the largest segment ({LK_MAX_REGION} bytes)")
    seg.base = <uint8_t *>seg._view.buf + offset
    seg.size = n
    seg._region_offset = offset
    _sigbus_watch(seg, seg._view.buf, total)     # the whole buffer: SIGBUS, see lk_sigbus.h
    if check:
        try:
            _check_version(seg.base, where)
        except UnsupportedFormat:
            seg.close()
            raise
        problem = _header_problem(seg.base, seg.size)
        for _ in range(3):
            # set_previous() (migration) rewrites the identity block of a
            # live segment in place; a reader may catch it half-written.
            if problem is None or not problem.startswith("header identity checksum"):
                break
            _time_mod.sleep(0.001)
            problem = _header_problem(seg.base, seg.size)
        if problem is not None:
            seg.close()
            raise SegmentDamaged(f"{where}: {problem}; logkit.salvage() can recover its messages")
        seg.sealed = _header_sealed(seg.base)
    return seg


cdef object _segment_create(path, size, family, previous, sequence_base, mode, segment_uuid, key):
    size = _validate_size(size)
    fam, prev = _identity_args(family, previous, sequence_base)
    sealing = _sealing_args(key, segment_uuid)
    uid = (segment_uuid or _uuid_mod.uuid4()).bytes
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SegmentNotFound(f"cannot create segment {path}: directory {directory} does not exist")
    if os.path.exists(path):
        raise SegmentExists(f"cannot create segment {path}: a file is already there")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{_uuid_mod.uuid4().hex[:8]}.new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as e:
            if e.errno in (28, 122):   # ENOSPC, EDQUOT
                raise DiskFull(e.errno, f"no space to create segment {path} of {size} bytes: {e.strerror}") from None
            if e.errno in (95, 22):    # file system without fallocate: fall back
                os.ftruncate(fd, size)
            else:
                raise
        mm = _mmap_mod.mmap(fd, size, _mmap_mod.MAP_SHARED, _mmap_mod.PROT_READ | _mmap_mod.PROT_WRITE)
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    cdef Segment seg = None
    try:
        seg = Segment._attach(mm, 0, size, False, path, mm, check=False)
        seg.file_id = (st.st_dev, st.st_ino)
        seg.prefault()
        _format_sealed(seg, fam, prev, sequence_base, uid, sealing)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise SegmentExists(f"cannot create segment {path}: another process created it first") from None
    except BaseException:
        os.unlink(tmp)
        if seg is not None:
            seg.close()
        else:
            mm.close()
        raise
    os.unlink(tmp)
    return seg


cdef object _segment_open(path, readonly, key, check_header):
    if not check_header:
        if key is not None:
            raise InvalidArgument("open(check_header=False) takes no key: judge the header first")
        return Segment._open_file(path, readonly, False)
    cdef Segment seg = Segment._open_file(path, readonly, True)
    try:
        seg.use_key(key)
    except BaseException:
        seg.close()
        raise
    return seg


cdef object _segment_open_file(path, bint readonly, bint check):
    path = os.fspath(path)
    try:
        fd = os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SegmentNotFound(f"no segment at {path}") from None
    try:
        st = os.fstat(fd)
        size = st.st_size
        if size < LK_MIN_REGION:
            raise SegmentDamaged(f"{path}: {size} bytes is too small for a segment (minimum {LK_MIN_REGION})")
        if readonly:
            mm = _mmap_mod.mmap(fd, size, _mmap_mod.MAP_SHARED, _mmap_mod.PROT_READ)
        else:
            mm = _mmap_mod.mmap(fd, size, _mmap_mod.MAP_SHARED, _mmap_mod.PROT_READ | _mmap_mod.PROT_WRITE)
    finally:
        os.close(fd)
    cdef Segment seg = Segment._attach(mm, 0, size, readonly, path, mm, check=check)
    seg.file_id = (st.st_dev, st.st_ino)
    if not readonly:
        seg.prefault()
    return seg


cdef object _segment_format(buffer, offset, length, family, previous, sequence_base, segment_uuid, key,
                            bint zeroed):
    fam, prev = _identity_args(family, previous, sequence_base)
    sealing = _sealing_args(key, segment_uuid)
    cdef Segment seg = Segment._attach(buffer, offset, length, False, None, None, check=False)
    if seg.size > LK_MAX_REGION or seg.size % 8:
        seg.close()
        raise InvalidArgument(f"region of {seg.size} bytes: size must be a multiple of 8 and at most 32 GiB")
    cdef uint32_t i
    if not zeroed:
        memset(seg.base + LK_HEADER_SIZE, 0, seg.size - LK_HEADER_SIZE)
    elif seg.size >= LK_HEADER_SIZE:
        # The caller vouches the region is blank (a new file): hold it to
        # that for the header at least, so that a mapping of the wrong file
        # can never format a segment that holds messages.
        for i in range(LK_HEADER_SIZE // 8):
            if (<uint64_t *>seg.base)[i] != 0:
                seg.close()
                raise InvalidArgument(f"format(zeroed=True): the region is not blank (its header holds data at "
                                      f"offset {i * 8}): refusing to format over what may be a segment")
    _format_sealed(seg, fam, prev, sequence_base, (segment_uuid or _uuid_mod.uuid4()).bytes, sealing)
    return seg


cdef object _segment_from_buffer(buffer, offset, length, readonly, key, path, close_buffer, check_header):
    if not check_header:
        if key is not None:
            raise InvalidArgument("from_buffer(check_header=False) takes no key: judge the header first")
        return Segment._attach(buffer, offset, length, readonly, path,
                               buffer if close_buffer else None, check=False)
    cdef Segment seg = Segment._attach(buffer, offset, length, readonly, path,
                                       buffer if close_buffer else None, check=True)
    try:
        seg.use_key(key)
    except BaseException:
        seg.close()
        raise
    return seg
