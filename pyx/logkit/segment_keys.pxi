# The keys of a sealed segment (included by _segment.pyx): Segment.use_key,
# rekey and the sealed write's re-derivation call these.  Module functions
# over a typed Segment, so the class body stays the list of what a Segment
# does; docs/format.md, "Sealed messages", says what the key check is.


cdef object _segment_use_key(Segment self, key):
    from logkit._crypto import key_check, segment_key
    from logkit.errors import MissingKey, WrongKey
    self._check_open()
    if key is None or not self.sealed:
        return None
    cdef uint16_t kid = _u16(self.base, LK_H_KEY_ID)
    where = self.path or "segment"
    if kid == 0:
        raise SegmentDamaged(f"{where}: sealed segment with key id 0 in its header (offset {LK_H_KEY_ID})")
    if isinstance(key, tuple):
        given, log_key = _log_key_arg(key)
        if given != kid:
            return MissingKey(f"{where} is sealed under key id {kid}; the key given has id {given}")
    else:
        try:
            log_key = key.key(kid)
        except MissingKey as e:
            return MissingKey(f"{where} is sealed under key id {kid}: {e}")
    sk = segment_key(log_key, bytes(self.base[LK_H_UUID:LK_H_UUID + 16]))
    self.key_check_problem = None
    memcpy(self.seal_key, <const char *>sk, 32)
    memcpy(self.seal_uuid, self.base + LK_H_UUID, 16)
    self.seal_key_id = kid
    self.has_key = True
    if key_check(sk) != bytes(self.base[LK_H_KEY_CHECK:LK_H_KEY_CHECK + 16]):
        # The key check is a quick answer, outside the identity CRC; the
        # messages' own authentication is the proof.  A key under which a
        # sealed message of this segment authenticates is its key, and
        # the check is what is damaged (a lost page, a scribble).
        if not _segment_some_message_opens(self):
            self.has_key = False
            self.seal_key_id = 0
            memset(self.seal_key, 0, 32)
            memset(self.seal_uuid, 0, 16)
            raise WrongKey(f"{where}: key id {kid} of {_key_source(key)} is not the key this segment "
                           f"({self.uuid}) was sealed with: its key check (header offset "
                           f"{LK_H_KEY_CHECK}) differs and no message authenticates under it")
        self.key_check_problem = (f"{where}: the key check at header offset {LK_H_KEY_CHECK} is damaged; "
                                  f"key id {kid} of {_key_source(key)} opens its messages")
        if not self.readonly:
            check = key_check(sk)
            memcpy(self.base + LK_H_KEY_CHECK, <const char *>check, 16)
            self.key_check_problem += " (check rewritten)"
    self._key_given = key
    return None


cdef bint _segment_some_message_opens(Segment self) except -1:
    """With the segment key set: does one of the first 16 sealed committed
    messages authenticate under it?"""
    from logkit.errors import MessageTampered
    cdef int tried = 0
    for m in SegmentIterator(self):
        if not m.sealed:
            continue
        try:
            m.text
            m.data
            return True
        except (MessageTampered, UnicodeDecodeError):
            pass
        tried += 1
        if tried >= 16:
            break
    return False


cdef object _segment_rekey(Segment self, key):
    self._check_open()
    if key is None:
        key = self._key_given
    self.sealed = _header_sealed(self.base)
    self.has_key = False
    self.seal_key_id = 0
    memset(self.seal_key, 0, 32)
    memset(self.seal_uuid, 0, 16)
    if not self.sealed or key is None:
        self._key_given = key
        return None
    return self.use_key(key)


cdef int _segment_write_sealed(Segment self, const void *tp, Py_ssize_t tn, const void *dp, Py_ssize_t dn, const char *cp, Py_ssize_t cn, int16_t sev, int64_t t, int64_t now, uint32_t pid, uint32_t tid, uint64_t *seq) except -1:
    """lk_write_sealed, deriving the key again and retrying while the
    region was formatted again under us (LK_REKEY, [K1]).  The status."""
    cdef int rc
    while True:
        rc = lk_write_sealed(self.base, self.size, tp, tn, dp, dn, cp, cn, sev, t, now, pid, tid,
                             self.seal_key_id, self.seal_key, self.seal_uuid, seq)
        if rc != LK_REKEY:
            return rc
        _segment_seal_ready(self)


cdef int _segment_seal_ready(Segment self) except -1:
    """Before a sealed write: re-derive the key if the region's UUID
    changed since it was derived ([K1] catches a change after the
    reservation too); refuse without the key."""
    if memcmp(self.base + LK_H_UUID, self.seal_uuid, 16) != 0:
        err = self.rekey()
        if err is not None:
            raise err
        if not self.sealed:
            return 0
    if not self.has_key:
        self._refuse_unkeyed()
    return 0
