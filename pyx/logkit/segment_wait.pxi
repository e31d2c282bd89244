# Waiting and listening (included by _segment.pyx): the bodies of
# Segment.listen, unlisten, wait and cancel_waits, and the writable header
# mapping and listener slot they share.  The orderings are the [W*], [L*]
# and [C1] labels of lk_wait.h and lk_segment.h.


cdef uint8_t *_segment_wake_header(Segment self) except? NULL:
    """Where this process writes the waiter count, the wake word and its
    listener slot: the segment's own header when it is writable; for a
    read-only segment of a file, the file's first page mapped writable
    (if this process may write the file, and its name still names the
    file mapped); else NULL, and wait() polls."""
    if self.base == NULL:
        return NULL
    if not self.readonly:
        self._hdr = self.base
        return self.base
    if self._hdr != NULL or self._hdr_tried:
        return self._hdr
    self._hdr_tried = True
    if self.path is None or self.file_id is None or self._region_offset != 0:
        return NULL
    try:
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return NULL                 # no write permission: poll
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.file_id:
            return NULL             # renamed away (rotated): the name is another file now
        mm = _mmap_mod.mmap(fd, LK_HEADER_SIZE, _mmap_mod.MAP_SHARED,
                            _mmap_mod.PROT_READ | _mmap_mod.PROT_WRITE)
    except OSError:
        return NULL
    finally:
        os.close(fd)
    PyObject_GetBuffer(mm, &self._wake_view, PyBUF_WRITABLE)
    self._has_wake_view = True
    self._wake_mmap = mm
    self._hdr = <uint8_t *>self._wake_view.buf
    _sigbus_watch(self, self._hdr, LK_HEADER_SIZE)     # SIGBUS: see lk_sigbus.h
    return self._hdr


cdef int _segment_claim_slot(Segment self, uint64_t min_interval_ns) except -2:
    """This process's listener slot, claimed now if need be ([L1]); its
    minimum interval set.  -1: the table is full of live processes, or
    the header cannot be written."""
    cdef uint8_t *hdr = _segment_wake_header(self)
    cdef uint32_t me = lk_process_id()
    cdef int i
    self._min_interval_ns = min_interval_ns
    if hdr == NULL:
        return -1
    if self._slot >= 0 and self._slot_pid == me and lk_listener_pid_load_acquire(
            <uint32_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_PID)) == me:
        lk_listener_field_store_relaxed(<uint64_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_MIN_INTERVAL),
                                        min_interval_ns)
        return self._slot
    if self._slot_pid != me:
        self._slot_waits = 0        # state inherited across fork() is the parent's
    self._slot = -1
    i = lk_listener_claim(hdr, me, min_interval_ns)
    if i >= 0:
        self._slot = i
        self._slot_pid = me
    return i


cdef void _segment_release_slot(Segment self, uint8_t *hdr) noexcept:
    if self._slot >= 0 and hdr != NULL and self._slot_pid == lk_process_id():
        lk_listener_release(hdr, self._slot, self._slot_pid)      # [L2]
    self._slot = -1
    self._release_after_wait = False


cdef object _segment_listen(Segment self, min_interval):
    self._check_open()
    try:
        interval = float(min_interval)
    except (TypeError, ValueError):
        raise InvalidArgument(f"min_interval {min_interval!r} is not a number of seconds") from None
    if not 0 <= interval <= 1e9:
        raise InvalidArgument(f"min_interval {min_interval!r} must be between 0 and 1e9 seconds")
    self._listen_retry_at = 0
    cdef int i = _segment_claim_slot(self, <uint64_t>(interval * 1e9))
    return i if i >= 0 else None


cdef object _segment_unlisten(Segment self):
    self._check_open()
    if self._slot_waits:
        self._release_after_wait = True
    else:
        _segment_release_slot(self, _segment_wake_header(self))


cdef object _segment_wait(Segment self, offset, timeout, poll_interval):
    self._check_open()
    if not isinstance(offset, int) or offset < LK_HEADER_SIZE or offset > self.size or offset % 8:
        raise InvalidArgument(f"{self.path or 'segment'}: wait offset {offset!r} is not a message "
                              f"position (a multiple of 8 from {LK_HEADER_SIZE} to {self.size})")
    try:
        pi = float(poll_interval)
        tm = None if timeout is None else float(timeout)
    except (TypeError, ValueError):
        raise InvalidArgument(f"wait(): timeout {timeout!r} and poll_interval {poll_interval!r} "
                              "must be numbers of seconds") from None
    if not 1e-6 <= pi <= 1e6:
        raise InvalidArgument(f"wait(): poll_interval {poll_interval!r} must be between 1e-6 and 1e6 seconds")
    if tm is not None and not tm >= 0:
        raise InvalidArgument(f"wait(): timeout {timeout!r} must be >= 0 seconds or None")
    cdef uint64_t at = offset
    cdef const uint8_t *base = self.base
    cdef uint64_t size = self.size
    cdef int64_t interval = <int64_t>(pi * 1e9)
    cdef int64_t deadline = -1
    cdef int64_t hold
    cdef uint8_t *hdr = NULL
    cdef uint32_t *flags = NULL
    cdef uint32_t me = lk_process_id()
    cdef int rc
    cdef bint use_slot = False
    if tm is not None:
        deadline = lk_monotonic_ns() + <int64_t>(min(tm, 1e9) * 1e9)
    self._wait_calls += 1
    if lk_cancel_take(&self._cancel):
        self._wait_timeouts += 1
        return False                    # cancel_waits() came first: this wait is the one cancelled
    guard = memoryview(self._owner)     # close() meanwhile cannot unmap what we sleep on
    wguard = None
    try:
        # The minimum interval: no new wait before it has passed since the
        # last wake-up (the waiter honours its own registration).
        if self._min_interval_ns and self._last_wake_mono:
            while True:
                hold = self._last_wake_mono + <int64_t>self._min_interval_ns - lk_monotonic_ns()
                if deadline >= 0 and deadline - lk_monotonic_ns() < hold:
                    hold = deadline - lk_monotonic_ns()
                if hold <= 0:
                    break
                with nogil:
                    rc = lk_sleep_ns(hold)
                if rc == LK_FUTEX_INTERRUPTED:
                    PyErr_CheckSignals()
        rc = LK_WAIT_READY if lk_wait_ready(base, size, at) else LK_WAIT_TIMEOUT
        if rc != LK_WAIT_READY and (deadline < 0 or lk_monotonic_ns() < deadline):
            hdr = _segment_wake_header(self)
            if hdr != NULL:
                if self._wake_mmap is not None:
                    wguard = memoryview(self._wake_mmap)
                if (self._slot < 0 or self._slot_pid != me) and lk_monotonic_ns() >= self._listen_retry_at:
                    if _segment_claim_slot(self, self._min_interval_ns) < 0:
                        self._listen_retry_at = lk_monotonic_ns() + 1000000000   # full: look again in 1 s
            if LK_HAVE_FUTEX and not _force_poll and hdr != NULL:
                if self._slot >= 0 and self._slot_pid == me and self._slot_waits == 0:
                    flags = <uint32_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_FLAGS)
                    self._slot_waits = 1
                    use_slot = True
                while True:
                    with nogil:
                        rc = lk_wait_futex(base, size, hdr, at, deadline, flags, &self._wait_sleeps,
                                           &self._cancel)
                    if rc != LK_WAIT_INTERRUPTED:
                        break
                    PyErr_CheckSignals()
            else:
                while True:
                    with nogil:
                        rc = lk_wait_poll(base, size, at, deadline, interval, &self._wait_sleeps,
                                          &self._cancel)
                    if rc != LK_WAIT_INTERRUPTED:
                        break
                    PyErr_CheckSignals()
        if rc == LK_WAIT_CANCELLED:
            lk_cancel_take(&self._cancel)
        if rc == LK_WAIT_READY:
            self._wait_ready += 1
            self._last_wake_mono = lk_monotonic_ns()
            if hdr != NULL and self._slot >= 0 and self._slot_pid == me:
                lk_listener_field_store_relaxed(
                    <uint64_t *>(lk_listener_slot(hdr, self._slot) + LK_LS_LAST_WAKE), <uint64_t>lk_now_ns())
        else:
            self._wait_timeouts += 1
        return rc == LK_WAIT_READY
    finally:
        if use_slot:
            self._slot_waits = 0
            if self._release_after_wait:
                _segment_release_slot(self, hdr)
        guard.release()
        if wguard is not None:
            wguard.release()


cdef object _segment_cancel_waits(Segment self):
    self._check_open()
    lk_cancel_set(&self._cancel)
    cdef uint8_t *hdr = _segment_wake_header(self)
    if hdr == NULL or not LK_HAVE_FUTEX:
        return
    guard = memoryview(self._wake_mmap) if self._wake_mmap is not None else None
    try:
        with nogil:
            lk_wake_waiters(hdr)        # [W4] after the [C1] store
    finally:
        if guard is not None:
            guard.release()
