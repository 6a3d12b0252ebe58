/* onnx/wire.h — protobuf wire-format helpers shared by the raw pre-scan in onnx/model_io.c
 * and the byte-level model rewrite in api/model_check.c. */
#ifndef QD_ONNX_WIRE_H
#define QD_ONNX_WIRE_H
#include <stddef.h>
#include <stdint.h>

/* Reads one base-128 varint at p[*pos] (p has len bytes) into *v and advances *pos.
 * Returns 0, or -1 when the varint is truncated or longer than 10 bytes. */
int qd_pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v);

#endif
