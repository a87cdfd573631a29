#define _GNU_SOURCE
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// A segment file is named after its number in 16 hex digits, "<number>.seg". Its first block is
// the header: magic "MQJRNLSG" | version u32 | flags u32 | number u64 | crc32c u32 of the 24
// bytes before it, then zeros. Records follow from byte 4096. In the active segment each record
// starts on a block boundary, and in a segment prepared ahead of use a block of zeros after the
// last record ends them. A dense segment, written whole by compaction, packs its records.

static const char segment_magic[8] = {'M', 'Q', 'J', 'R', 'N', 'L', 'S', 'G'};
#define SEGMENT_VERSION 1u
#define READER_CAPACITY (1u << 20)

void segment_name(uint64_t number, char *name, size_t size) {
    snprintf(name, size, "%016" PRIx64 ".seg", number);
}

static bool parse_segment_name(const char *name, uint64_t *number) {
    if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0) {
        return false;
    }
    uint64_t value = 0;
    for (int index = 0; index < 16; index++) {
        char character = name[index];
        int digit;
        if (character >= '0' && character <= '9') {
            digit = character - '0';
        } else if (character >= 'a' && character <= 'f') {
            digit = character - 'a' + 10;
        } else {
            return false;
        }
        value = (value << 4) | (uint64_t)digit;
    }
    *number = value;
    return true;
}

static int compare_segments(const void *lhs, const void *rhs) {
    const struct segment_info *left = lhs;
    const struct segment_info *right = rhs;
    return left->number < right->number ? -1 : left->number > right->number;
}

int segment_list(int directory_fd, struct segment_info **segments, size_t *count) {
    int listing_fd = openat(directory_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (listing_fd < 0) {
        return -1;
    }
    DIR *directory = fdopendir(listing_fd);
    if (!directory) {
        close(listing_fd);
        return -1;
    }

    struct segment_info *list = NULL;
    size_t used = 0;
    size_t capacity = 0;
    struct dirent *item;
    while ((item = readdir(directory)) != NULL) {
        uint64_t number;
        if (!parse_segment_name(item->d_name, &number)) {
            continue;
        }
        struct stat info;
        if (fstatat(directory_fd, item->d_name, &info, 0) != 0) {
            continue;
        }
        if (used == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            struct segment_info *grown = realloc(list, capacity * sizeof(*list));
            if (!grown) {
                free(list);
                closedir(directory);
                errno = ENOMEM;
                return -1;
            }
            list = grown;
        }
        list[used++] = (struct segment_info){.number = number, .dense = false, .size = (uint64_t)info.st_size};
    }
    closedir(directory);
    qsort(list, used, sizeof(*list), compare_segments);
    *segments = list;
    *count = used;
    return 0;
}

int fsync_directory(int directory_fd) {
    return fsync(directory_fd);
}

static int write_all(int fd, const void *data, size_t length, off_t offset) {
    const uint8_t *bytes = data;
    while (length > 0) {
        ssize_t written = pwrite(fd, bytes, length, offset);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        bytes += written;
        length -= (size_t)written;
        offset += written;
    }
    return 0;
}

int segment_create(int directory_fd, const char *name, uint64_t number, bool dense, int *fd_out) {
    int fd = openat(directory_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    uint8_t header[SEGMENT_HEADER_SIZE];
    memset(header, 0, sizeof(header));
    memcpy(header, segment_magic, 8);
    uint32_t version = SEGMENT_VERSION;
    uint32_t flags = dense ? SEGMENT_FLAG_DENSE : 0;
    for (int index = 0; index < 4; index++) {
        header[8 + index] = (uint8_t)(version >> (8 * index));
        header[12 + index] = (uint8_t)(flags >> (8 * index));
    }
    for (int index = 0; index < 8; index++) {
        header[16 + index] = (uint8_t)(number >> (8 * index));
    }
    uint32_t checksum = crc32c(0, header, 24);
    for (int index = 0; index < 4; index++) {
        header[24 + index] = (uint8_t)(checksum >> (8 * index));
    }
    if (write_all(fd, header, sizeof(header), 0) != 0 || fdatasync(fd) != 0) {
        int saved = errno;
        close(fd);
        unlinkat(directory_fd, name, 0);
        errno = saved;
        return -1;
    }
    *fd_out = fd;
    return 0;
}

int segment_read_header(int fd, uint64_t *number, bool *dense) {
    uint8_t header[28];
    ssize_t got = pread(fd, header, sizeof(header), 0);
    if (got != (ssize_t)sizeof(header)) {
        if (got >= 0) {
            errno = EINVAL;
        }
        return -1;
    }
    uint32_t checksum = 0;
    uint32_t flags = 0;
    uint64_t value = 0;
    for (int index = 3; index >= 0; index--) {
        checksum = (checksum << 8) | header[24 + index];
        flags = (flags << 8) | header[12 + index];
    }
    for (int index = 7; index >= 0; index--) {
        value = (value << 8) | header[16 + index];
    }
    if (memcmp(header, segment_magic, 8) != 0 || crc32c(0, header, 24) != checksum) {
        errno = EINVAL;
        return -1;
    }
    *number = value;
    *dense = (flags & SEGMENT_FLAG_DENSE) != 0;
    return 0;
}

int reader_open(struct segment_reader *reader, int fd, bool dense) {
    memset(reader, 0, sizeof(*reader));
    reader->fd = fd;
    reader->dense = dense;
    reader->capacity = READER_CAPACITY;
    reader->buffer = malloc(reader->capacity);
    if (!reader->buffer) {
        errno = ENOMEM;
        return -1;
    }
    reader->buffer_offset = SEGMENT_HEADER_SIZE;
    reader->next_offset = SEGMENT_HEADER_SIZE;
    return 0;
}

/// Reads more bytes at the end of the buffer. A read error on a large range is retried block by
/// block, so that the readable records before a damaged gocryptfs block are still returned.
static int reader_fill(struct segment_reader *reader, size_t wanted) {
    if (reader->start > 0) {
        memmove(reader->buffer, reader->buffer + reader->start, reader->end - reader->start);
        reader->buffer_offset += reader->start;
        reader->end -= reader->start;
        reader->start = 0;
    }
    if (wanted > reader->capacity) {
        uint8_t *grown = realloc(reader->buffer, wanted);
        if (!grown) {
            errno = ENOMEM;
            return -1;
        }
        reader->buffer = grown;
        reader->capacity = wanted;
    }
    while (reader->end < wanted && !reader->end_of_file) {
        off_t position = (off_t)(reader->buffer_offset + reader->end);
        ssize_t got = pread(reader->fd, reader->buffer + reader->end, reader->capacity - reader->end, position);
        if (got < 0 && errno == EIO && reader->capacity - reader->end > JOURNAL_BLOCK_SIZE) {
            size_t block = JOURNAL_BLOCK_SIZE - (size_t)(position % JOURNAL_BLOCK_SIZE);
            got = pread(reader->fd, reader->buffer + reader->end, block, position);
        }
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (got == 0) {
            reader->end_of_file = true;
        }
        reader->end += (size_t)got;
    }
    return 0;
}

int reader_next(struct segment_reader *reader, struct journal_record *record, uint64_t *offset, uint32_t *size) {
    // Skip to the record's start: padding is dropped from the buffer.
    uint64_t skip = reader->next_offset - (reader->buffer_offset + reader->start);
    while (skip > 0) {
        size_t available = reader->end - reader->start;
        if (available == 0) {
            if (reader->end_of_file) {
                break;
            }
            if (reader_fill(reader, reader->capacity) != 0) {
                *offset = reader->next_offset;
                return -2;
            }
            continue;
        }
        size_t step = skip < available ? (size_t)skip : available;
        reader->start += step;
        skip -= step;
    }
    *offset = reader->next_offset;
    size_t wanted = RECORD_HEADER_SIZE;
    while (true) {
        size_t available = reader->end - reader->start;
        if (available == 0 && reader->end_of_file) {
            return 0;
        }
        enum decode_result result = available >= wanted
            ? record_decode(reader->buffer + reader->start, available, record, size) : DECODE_SHORT;
        if (result == DECODE_OK) {
            break;
        }
        if (result == DECODE_INVALID) {
            static const uint8_t zeros[RECORD_HEADER_SIZE];
            bool zero_block = !reader->dense && available >= RECORD_HEADER_SIZE
                && memcmp(reader->buffer + reader->start, zeros, RECORD_HEADER_SIZE) == 0;
            return zero_block ? 0 : -1;
        }
        if (reader->end_of_file) {
            return available == 0 ? 0 : -1;
        }
        if (available >= RECORD_HEADER_SIZE) {
            uint32_t body = (uint32_t)reader->buffer[reader->start + 8] | ((uint32_t)reader->buffer[reader->start + 9] << 8)
                | ((uint32_t)reader->buffer[reader->start + 10] << 16) | ((uint32_t)reader->buffer[reader->start + 11] << 24);
            wanted = RECORD_HEADER_SIZE + (size_t)body;
        }
        if (reader_fill(reader, wanted > reader->capacity ? wanted : reader->capacity) != 0) {
            return -2;
        }
    }
    uint64_t consumed = *size;
    if (!reader->dense) {
        consumed = (consumed + JOURNAL_BLOCK_SIZE - 1) / JOURNAL_BLOCK_SIZE * JOURNAL_BLOCK_SIZE;
    }
    reader->next_offset += consumed;
    return 1;
}

void reader_close(struct segment_reader *reader) {
    free(reader->buffer);
    reader->buffer = NULL;
}
