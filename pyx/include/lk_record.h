/*
 * lk_record.h -- what a Python log record carries besides its text: the
 * record payload, a message's data of class "record" (docs/format.md,
 * "The record payload").
 *
 *   offset  size  field
 *        0     1  version (LK_RECORD_VERSION, 1)
 *        1     1  flags (0; readers ignore bits they do not know)
 *        2     2  logger name length        (u16, little-endian)
 *        4     2  module length             (u16)
 *        6     2  function length           (u16)
 *        8     2  path length               (u16)
 *       10     2  reserved (0)
 *       12     4  line number               (u32)
 *       16     4  fields length             (u32: a JSON object, UTF-8; 0: none)
 *       20     4  traceback length          (u32: UTF-8 text; 0: none)
 *       24        logger | module | function | path | fields | traceback
 *
 * The lengths add up to the data length exactly, or the payload is not a
 * record payload (a reader shows its bytes as they are).  Each message is
 * self-contained: nothing refers to another message or to a table, so a
 * salvaged or partly lost segment keeps whole records.  Pure functions of
 * the bytes: no atomics, no state, safe on a mapping another process writes
 * (the caller copies what it will trust, as the readers do).
 */
#ifndef LK_RECORD_H
#define LK_RECORD_H

#include <stdint.h>
#include <string.h>

#define LK_RECORD_VERSION   1
#define LK_RECORD_HEADER    24
#define LK_RECORD_NAME_MAX  0xFFFFu          /* logger, module, function, path */

#define LK_R_VERSION     0
#define LK_R_FLAGS       1
#define LK_R_LOGGER_LEN  2
#define LK_R_MODULE_LEN  4
#define LK_R_FUNC_LEN    6
#define LK_R_PATH_LEN    8
#define LK_R_LINE       12
#define LK_R_FIELDS_LEN 16
#define LK_R_TB_LEN     20

typedef struct {
    uint32_t logger, module, function, path;   /* offsets of each part in the payload */
    uint32_t logger_len, module_len, function_len, path_len;
    uint32_t line;
    uint32_t fields, fields_len;
    uint32_t traceback, traceback_len;
} lk_record_view;

static inline uint16_t lk_r_u16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t lk_r_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* 1 and *v filled if the n bytes at p are a record payload of a version this
 * code reads; else 0.  Every length is bounded by n before it is used. */
static inline int lk_record_parse(const uint8_t *p, uint64_t n, lk_record_view *v) {
    if (n < LK_RECORD_HEADER || n > 0xFFFFFFFFull || p[LK_R_VERSION] != LK_RECORD_VERSION)
        return 0;
    uint64_t at = LK_RECORD_HEADER;
    v->logger_len = lk_r_u16(p + LK_R_LOGGER_LEN);
    v->module_len = lk_r_u16(p + LK_R_MODULE_LEN);
    v->function_len = lk_r_u16(p + LK_R_FUNC_LEN);
    v->path_len = lk_r_u16(p + LK_R_PATH_LEN);
    v->line = lk_r_u32(p + LK_R_LINE);
    v->fields_len = lk_r_u32(p + LK_R_FIELDS_LEN);
    v->traceback_len = lk_r_u32(p + LK_R_TB_LEN);
    v->logger = (uint32_t)at;    at += v->logger_len;
    v->module = (uint32_t)at;    at += v->module_len;
    v->function = (uint32_t)at;  at += v->function_len;
    v->path = (uint32_t)at;      at += v->path_len;
    if (at > n) return 0;
    v->fields = (uint32_t)at;    at += v->fields_len;
    if (at > n) return 0;
    v->traceback = (uint32_t)at; at += v->traceback_len;
    return at == n;
}

/* The payload's size for these lengths (names already cut to
 * LK_RECORD_NAME_MAX by the caller); 0 if it would not fit 32 bits. */
static inline uint64_t lk_record_size(uint64_t logger, uint64_t module, uint64_t function,
                                      uint64_t path, uint64_t fields, uint64_t traceback) {
    uint64_t n = LK_RECORD_HEADER + logger + module + function + path + fields + traceback;
    return n > 0xFFFFFFFFull ? 0 : n;
}

/* Write a payload into out (lk_record_size bytes). */
static inline void lk_record_put(uint8_t *out,
                                 const char *logger, uint16_t logger_len,
                                 const char *module, uint16_t module_len,
                                 const char *function, uint16_t function_len,
                                 const char *path, uint16_t path_len, uint32_t line,
                                 const char *fields, uint32_t fields_len,
                                 const char *traceback, uint32_t traceback_len) {
    uint8_t *q = out + LK_RECORD_HEADER;
    memset(out, 0, LK_RECORD_HEADER);
    out[LK_R_VERSION] = LK_RECORD_VERSION;
    memcpy(out + LK_R_LOGGER_LEN, &logger_len, 2);
    memcpy(out + LK_R_MODULE_LEN, &module_len, 2);
    memcpy(out + LK_R_FUNC_LEN, &function_len, 2);
    memcpy(out + LK_R_PATH_LEN, &path_len, 2);
    memcpy(out + LK_R_LINE, &line, 4);
    memcpy(out + LK_R_FIELDS_LEN, &fields_len, 4);
    memcpy(out + LK_R_TB_LEN, &traceback_len, 4);
    if (logger_len) { memcpy(q, logger, logger_len); q += logger_len; }
    if (module_len) { memcpy(q, module, module_len); q += module_len; }
    if (function_len) { memcpy(q, function, function_len); q += function_len; }
    if (path_len) { memcpy(q, path, path_len); q += path_len; }
    if (fields_len) { memcpy(q, fields, fields_len); q += fields_len; }
    if (traceback_len) memcpy(q, traceback, traceback_len);
}

#endif /* LK_RECORD_H */
