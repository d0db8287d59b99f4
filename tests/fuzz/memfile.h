/*
 * An in-memory file for targets whose parser reads a path: a memfd that each
 * run rewrites, reachable as /proc/self/fd/N (header-only).
 */
#ifndef KN_FUZZ_MEMFILE_H
#define KN_FUZZ_MEMFILE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct fuzz_memfile_s {
    int fd;
    char path[64];
} fuzz_memfile_t;

static inline void fuzz_memfile_open(fuzz_memfile_t *f, const char *name)
{
    f->fd = memfd_create(name, 0);
    if (f->fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

/* Replaces the file's content with data. */
static inline void fuzz_memfile_set(fuzz_memfile_t *f, const void *data, size_t size)
{
    if (ftruncate(f->fd, 0) != 0 || (size && pwrite(f->fd, data, size, 0) != (ssize_t)size)) {
        perror("memfd write");
        abort();
    }
}

#endif
