/*
 * tapdev.c - opening a Linux TAP device for the lwIP backend.  Kept apart
 * from the files that see lwIP's headers (lwstack.h) because
 * <linux/if_tun.h> and <net/if.h> clash with lwIP's own netif headers.
 */
#include "lwpriv.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

int cd_lwip_tap_open(const char *name)
{
	if (name == NULL || strlen(name) >= IFNAMSIZ) {
		errno = EINVAL;
		return -1;
	}
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	/* Raw Ethernet frames, one per read or write: no packet header. */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}
#else
int cd_lwip_tap_open(const char *name)
{
	(void)name;
	errno = ENOSYS;
	return -1;
}
#endif
