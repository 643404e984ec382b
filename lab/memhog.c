/*
 * memhog: hold N MiB of anonymous memory in a chosen state, then sleep forever.
 * Built statically (gcc -static -O2) by lab/build-guest.sh and put into the lab
 * guests' initramfs as /bin/memhog, so that guest states (THP, KSM, swap,
 * mlock) can be created for fixtures and end-to-end tests.
 *
 * usage: memhog MIB [-p zero|random|same] [-m] [-H] [-l] [-t SECONDS]
 *   -p zero    leave pages zero-filled but touched (write one 0 byte per page)
 *   -p random  fill with pseudo-random bytes (not mergeable, not compressible)
 *   -p same    fill every page with the same non-zero 4 KiB pattern (default;
 *              what KSM merges into one page)
 *   -m         madvise(MADV_MERGEABLE): offer the area to KSM
 *   -H         madvise(MADV_HUGEPAGE): ask for transparent hugepages
 *   -l         mlock the area (fails without CAP_IPC_LOCK / enough RLIMIT_MEMLOCK)
 *   -t S       re-touch (read) every page each S seconds (keeps it hot; 0 = never)
 * Prints "MEMHOG-READY pid=<pid> mib=<n>" on stdout once the area is filled,
 * then sleeps until killed. Exit status 2 on bad usage, 1 on a failed syscall.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: memhog MIB [-p zero|random|same] [-m] [-H] [-l] [-t SECONDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *pattern = "same";
	int merge = 0, huge = 0, lock = 0, opt;
	unsigned long touch_s = 0;
	char *end;

	while ((opt = getopt(argc, argv, "p:mHlt:")) != -1) {
		switch (opt) {
		case 'p': pattern = optarg; break;
		case 'm': merge = 1; break;
		case 'H': huge = 1; break;
		case 'l': lock = 1; break;
		case 't': touch_s = strtoul(optarg, &end, 10); if (*end) usage(); break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	errno = 0;
	unsigned long mib = strtoul(argv[optind], &end, 10);
	if (errno || *end || mib == 0 || mib > (1UL << 20))
		usage();
	if (strcmp(pattern, "zero") && strcmp(pattern, "random") && strcmp(pattern, "same"))
		usage();

	size_t len = mib << 20;
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("memhog: mmap");
		return 1;
	}
	if (huge && madvise(p, len, MADV_HUGEPAGE)) {
		perror("memhog: madvise(MADV_HUGEPAGE)");
		return 1;
	}
	if (merge && madvise(p, len, MADV_MERGEABLE)) {
		perror("memhog: madvise(MADV_MERGEABLE)");
		return 1;
	}

	uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	for (size_t off = 0; off < len; off += pg) {
		unsigned char *q = p + off;
		if (!strcmp(pattern, "zero")) {
			q[0] = 0;
		} else if (!strcmp(pattern, "same")) {
			for (long i = 0; i < pg; i++)
				q[i] = (unsigned char)(i * 7 + 1);
		} else {
			for (long i = 0; i < pg; i += 8) { /* xorshift64 */
				x ^= x << 13; x ^= x >> 7; x ^= x << 17;
				memcpy(q + i, &x, 8);
			}
		}
	}
	if (lock && mlock(p, len)) {
		perror("memhog: mlock");
		return 1;
	}
	printf("MEMHOG-READY pid=%d mib=%lu\n", (int)getpid(), mib);
	fflush(stdout);

	volatile unsigned long sink = 0;
	for (;;) {
		if (touch_s == 0) {
			pause();
			continue;
		}
		sleep((unsigned)touch_s);
		for (size_t off = 0; off < len; off += pg)
			sink += p[off];
	}
	return 0;
}
