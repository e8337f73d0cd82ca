/* IPC frames: a 4-byte big-endian length, then one packed Envelope of that length. */

#include <string.h>

#include "stemedb/ipc.h"

const char *ipc_result_name(enum ipc_result r)
{
	switch (r) {
	case IPC_OK:
		return "ok";
	case IPC_ERR_TIMEOUT:
		return "timed out";
	case IPC_ERR_UNAVAILABLE:
		return "unavailable";
	case IPC_ERR_CLOSED:
		return "connection closed";
	case IPC_ERR_PROTOCOL:
		return "protocol error";
	case IPC_ERR_REMOTE:
		return "error reply";
	case IPC_ERR_IO:
		return "I/O error";
	}
	return "unknown";
}

const char *ipc_frame_status_reason(enum ipc_frame_status s)
{
	switch (s) {
	case IPC_FRAME_OK:
		return "ok";
	case IPC_FRAME_INCOMPLETE:
		return "incomplete";
	case IPC_FRAME_ZERO_LENGTH:
		return "zero_length";
	case IPC_FRAME_TOO_LARGE:
		return "too_large";
	case IPC_FRAME_BAD_ENVELOPE:
		return "bad_envelope";
	case IPC_FRAME_TRUNCATED:
		return "truncated";
	}
	return "unknown";
}

static uint32_t load_u32be(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

enum ipc_frame_status ipc_frame_decode(const uint8_t *data, size_t len, uint32_t max_frame,
                                       ipc_envelope **out, size_t *consumed, size_t *needed)
{
	uint32_t length;

	*out = NULL;
	*consumed = 0;
	*needed = 0;
	if (max_frame == 0)
		max_frame = IPC_DEFAULT_MAX_FRAME_BYTES;
	if (len < IPC_FRAME_HEADER_BYTES)
		return IPC_FRAME_INCOMPLETE;

	length = load_u32be(data);
	if (length == 0)
		return IPC_FRAME_ZERO_LENGTH;
	if (length > max_frame)
		return IPC_FRAME_TOO_LARGE;
	if (len - IPC_FRAME_HEADER_BYTES < length) {
		*needed = IPC_FRAME_HEADER_BYTES + (size_t)length;
		return IPC_FRAME_INCOMPLETE;
	}

	*out = stemedb__ipc__v1__envelope__unpack(NULL, length, data + IPC_FRAME_HEADER_BYTES);
	if (*out == NULL)
		return IPC_FRAME_BAD_ENVELOPE;
	*consumed = IPC_FRAME_HEADER_BYTES + (size_t)length;
	return IPC_FRAME_OK;
}

bool ipc_frame_encode(const ipc_envelope *env, uint32_t max_frame, struct buf *out)
{
	size_t size = stemedb__ipc__v1__envelope__get_packed_size(env);
	uint8_t *p;

	if (max_frame == 0)
		max_frame = IPC_DEFAULT_MAX_FRAME_BYTES;
	if (size == 0 || size > max_frame)
		return false;

	buf_reserve(out, IPC_FRAME_HEADER_BYTES + size);
	p = out->data + out->len;
	p[0] = (uint8_t)(size >> 24);
	p[1] = (uint8_t)(size >> 16);
	p[2] = (uint8_t)(size >> 8);
	p[3] = (uint8_t)size;
	stemedb__ipc__v1__envelope__pack(env, p + IPC_FRAME_HEADER_BYTES);
	out->len += IPC_FRAME_HEADER_BYTES + size;
	return true;
}

void ipc_envelope_free(ipc_envelope *env)
{
	if (env != NULL)
		stemedb__ipc__v1__envelope__free_unpacked(env, NULL);
}
