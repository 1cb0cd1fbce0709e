/*
 * clock.c - the monotonic clock, in the units the tools count in.
 */
#include "common.h"

#include <time.h>

uint64_t tool_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tool_now_ms(void)
{
	return tool_now_ns() / 1000000u;
}

double tool_now_us(void)
{
	return (double)tool_now_ns() / 1e3;
}
