// Dispatch-heavy: an eight-state machine driven by 2 KiB of input, one switch per byte.
#include "bench.h"

u64 fsm(u8 *buf, u64 len)
{
	u64 state = 0, acc = 0;
	for (u64 i = 0; i < len && i < 2048; i++) {
		u64 c = buf[i];
		switch (state) {
		case 0:
			state = (c & 3) + 1;
			acc += c;
			break;
		case 1:
			state = c & 1 ? 2 : 5;
			acc ^= c << 1;
			break;
		case 2:
			state = c > 100 ? 3 : 0;
			acc += acc >> 3;
			break;
		case 3:
			state = (c & 6) ? 4 : 1;
			acc *= 3;
			break;
		case 4:
			state = (c & 8) ? 6 : 0;
			acc -= c;
			break;
		case 5:
			state = (c & 16) ? 7 : 2;
			acc += 7;
			break;
		case 6:
			state = c & 1;
			acc ^= 0x5a5a;
			break;
		default:
			state = (c >> 5) & 7;
			acc = (acc << 1) | (acc >> 63);
			break;
		}
	}
	return acc ^ state;
}
