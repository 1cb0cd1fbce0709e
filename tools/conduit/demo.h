/*
 * demo.h - `conduit demo`: every backend end to end in one run (demo.c).
 */
#ifndef CONDUIT_TOOLS_DEMO_H
#define CONDUIT_TOOLS_DEMO_H

/* Run the demo.  argv[0] is "demo"; the rest are the demo's own options.
 * Returns the process exit status: 0 when every leg passed. */
int conduit_demo(int argc, char **argv);

#endif
