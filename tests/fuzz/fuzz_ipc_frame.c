/* libFuzzer target for the IPC frame decoder: every input is read as a byte stream of
 * frames, with a small limit so that the oversize path is reached too. Each decoded
 * Envelope is packed again, which walks every field the unpacker produced. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "stemedb/ipc.h"

#define FUZZ_MAX_FRAME 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t offset = 0;

	while (offset < size) {
		ipc_envelope *env = NULL;
		size_t consumed = 0, needed = 0;
		enum ipc_frame_status st = ipc_frame_decode(
		        data + offset, size - offset, FUZZ_MAX_FRAME, &env, &consumed, &needed);

		if (st != IPC_FRAME_OK) {
			if (env != NULL ||
			    (st == IPC_FRAME_INCOMPLETE && needed != 0 && needed <= size - offset))
				abort();
			break;
		}
		if (consumed == 0 || consumed > size - offset)
			abort();

		struct buf again;

		buf_init(&again);
		ipc_frame_encode(env, 0, &again);
		buf_free(&again);
		ipc_envelope_free(env);
		offset += consumed;
	}
	return 0;
}
