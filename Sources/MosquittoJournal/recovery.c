#define _GNU_SOURCE
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto_broker.h>

// Recovery reads every segment in order and rebuilds the index: the last record per topic,
// the QoS 2 records still waiting for PUBREL, and undo records applied to the record before
// them. A torn or invalid record can only be the tail of the newest segment, because every
// earlier record was made durable before the next one was written: that tail is cut off.

static void remove_temporary_files(int directory_fd) {
    int listing_fd = openat(directory_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *directory = listing_fd >= 0 ? fdopendir(listing_fd) : NULL;
    if (!directory) {
        if (listing_fd >= 0) {
            close(listing_fd);
        }
        return;
    }
    struct dirent *item;
    while ((item = readdir(directory)) != NULL) {
        size_t length = strlen(item->d_name);
        if (length > 4 && strcmp(item->d_name + length - 4, ".tmp") == 0) {
            unlinkat(directory_fd, item->d_name, 0);
            journal_log(MOSQ_LOG_INFO, "removed %s, left by an interrupted compaction", item->d_name);
        } else if (length > 5 && strcmp(item->d_name + length - 5, ".prep") == 0) {
            unlinkat(directory_fd, item->d_name, 0);
        }
    }
    closedir(directory);
}

/// Removes the segments that the newest dense (compacted) segment already contains. They remain
/// only when the broker stopped between the compaction's rename and its removal of the inputs.
static int remove_compacted_inputs(struct journal *journal, struct segment_info *segments, size_t *count) {
    size_t newest_dense = SIZE_MAX;
    for (size_t index = 0; index < *count; index++) {
        char name[32];
        segment_name(segments[index].number, name, sizeof(name));
        int fd = openat(journal->directory_fd, name, O_RDONLY | O_CLOEXEC);
        uint64_t number = 0;
        bool dense = false;
        if (fd >= 0 && segment_read_header(fd, &number, &dense) == 0 && number == segments[index].number) {
            segments[index].dense = dense;
            if (dense) {
                newest_dense = index;
            }
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    if (newest_dense == SIZE_MAX || newest_dense == 0) {
        return 0;
    }
    for (size_t index = 0; index < newest_dense; index++) {
        char name[32];
        segment_name(segments[index].number, name, sizeof(name));
        if (unlinkat(journal->directory_fd, name, 0) != 0) {
            return -1;
        }
        journal_log(MOSQ_LOG_INFO, "removed %s, already contained in a compacted segment", name);
    }
    memmove(segments, segments + newest_dense, (*count - newest_dense) * sizeof(*segments));
    *count -= newest_dense;
    return fsync_directory(journal->directory_fd);
}

/// True when a valid record starts at `offset`.
static bool record_starts_at(int fd, uint64_t offset, uint64_t size) {
    uint8_t header[RECORD_HEADER_SIZE];
    if (size - offset < RECORD_HEADER_SIZE || pread(fd, header, sizeof(header), (off_t)offset) != (ssize_t)sizeof(header)) {
        return false;
    }
    uint32_t body = (uint32_t)header[8] | ((uint32_t)header[9] << 8) | ((uint32_t)header[10] << 16) | ((uint32_t)header[11] << 24);
    if (body > RECORD_MAX_BODY || RECORD_HEADER_SIZE + (uint64_t)body > size - offset) {
        return false;
    }
    uint8_t *record = malloc(RECORD_HEADER_SIZE + (size_t)body);
    struct journal_record decoded;
    uint32_t length = 0;
    bool valid = record && pread(fd, record, RECORD_HEADER_SIZE + (size_t)body, (off_t)offset) == (ssize_t)(RECORD_HEADER_SIZE + body)
        && record_decode(record, RECORD_HEADER_SIZE + (size_t)body, &decoded, &length) == DECODE_OK;
    free(record);
    return valid;
}

/// Overwrites the torn record at `end` with zeros: the blocks from `end` up to the next block of
/// zeros or the end of the file. Writing whole blocks needs no read, so it also works where
/// gocryptfs can no longer decrypt a torn block. Returns the number of bytes overwritten, or -1
/// when a write fails. Returns -2, writing nothing, when a valid record follows in that range.
/// Such damage is not a torn tail, because each record was durable before the next was written.
static int64_t repair_torn_tail(int fd, uint64_t end, uint64_t size) {
    static const uint8_t zeros[JOURNAL_BLOCK_SIZE];
    uint8_t block[JOURNAL_BLOCK_SIZE];
    uint64_t stop = end + JOURNAL_BLOCK_SIZE;
    while (stop < size) {
        size_t length = size - stop < JOURNAL_BLOCK_SIZE ? (size_t)(size - stop) : JOURNAL_BLOCK_SIZE;
        if (pread(fd, block, length, (off_t)stop) == (ssize_t)length && memcmp(block, zeros, length) == 0) {
            break;
        }
        if (stop % JOURNAL_BLOCK_SIZE == 0 && record_starts_at(fd, stop, size)) {
            return -2;
        }
        stop += length;
    }
    if (stop > size) {
        stop = size;
    }
    for (uint64_t offset = end; offset < stop; offset += JOURNAL_BLOCK_SIZE) {
        size_t length = stop - offset < JOURNAL_BLOCK_SIZE ? (size_t)(stop - offset) : JOURNAL_BLOCK_SIZE;
        if (pwrite(fd, zeros, length, (off_t)offset) != (ssize_t)length) {
            return -1;
        }
    }
    if (fdatasync(fd) != 0) {
        return -1;
    }
    return (int64_t)(stop - end);
}

static int scan_segment(struct journal *journal, const struct segment_info *segment, bool is_last, int *fd_out) {
    char name[32];
    segment_name(segment->number, name, sizeof(name));
    int fd = openat(journal->directory_fd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        journal_log(MOSQ_LOG_ERR, "cannot open %s/%s: %s", journal->options.directory, name, strerror(errno));
        return -1;
    }
    uint64_t number = 0;
    bool dense = false;
    if (segment_read_header(fd, &number, &dense) != 0 || number != segment->number) {
        close(fd);
        if (is_last) {
            // The broker stopped while creating this segment, so it contains no record yet.
            unlinkat(journal->directory_fd, name, 0);
            journal_log(MOSQ_LOG_WARNING, "removed %s, whose header was never completed", name);
            *fd_out = -1;
            return 1;
        }
        journal_log(MOSQ_LOG_ERR, "%s/%s has an invalid header; move the journal directory aside to start without it",
                    journal->options.directory, name);
        errno = EINVAL;
        return -1;
    }

    struct segment_reader reader;
    if (reader_open(&reader, fd, dense) != 0) {
        close(fd);
        return -1;
    }
    uint64_t end = SEGMENT_HEADER_SIZE;
    int result;
    while (true) {
        struct journal_record record;
        uint64_t offset = 0;
        uint32_t size = 0;
        result = reader_next(&reader, &record, &offset, &size);
        if (result != 1) {
            end = offset;
            break;
        }
        struct location where = {.segment = segment->number, .offset = offset, .length = size};
        journal_apply(journal, &record, &where, reader.buffer + reader.start);
        if (record.seq >= journal->next_seq) {
            journal->next_seq = record.seq + 1;
        }
        if (record.written_at_ns > journal->stats.last_sync_at_ns) {
            journal->stats.last_sync_at_ns = record.written_at_ns;
        }
        journal->stats.recovered_records++;
    }
    reader_close(&reader);

    if (result < 0) {
        if (!is_last) {
            journal_log(MOSQ_LOG_ERR, "%s/%s is damaged at byte %" PRIu64 " although later segments exist; move the journal directory aside to start without it",
                        journal->options.directory, name, end);
            close(fd);
            errno = EIO;
            return -1;
        }
        int64_t zeroed = repair_torn_tail(fd, end, segment->size);
        if (zeroed == -2) {
            journal_log(MOSQ_LOG_ERR, "%s/%s is damaged at byte %" PRIu64 " and valid records follow; move the journal directory aside to start without it",
                        journal->options.directory, name, end);
            close(fd);
            errno = EIO;
            return -1;
        }
        if (zeroed < 0) {
            journal_log(MOSQ_LOG_ERR, "cannot cut the torn tail of %s/%s at byte %" PRIu64 ": %s",
                        journal->options.directory, name, end, strerror(errno));
            close(fd);
            return -1;
        }
        journal->stats.truncated_bytes += (uint64_t)zeroed;
        journal_log(MOSQ_LOG_NOTICE, "cut the torn tail of %s at byte %" PRIu64 " (%" PRId64 " bytes that were never acknowledged)",
                    name, end, zeroed);
    }

    journal->total_bytes += end;
    journal->segment_count++;
    if (is_last && !dense) {
        *fd_out = fd;
        journal->active_size = end;
    } else {
        close(fd);
        *fd_out = -1;
    }
    journal->active_number = segment->number;
    return 0;
}

int recovery_run(struct journal *journal) {
    int64_t started = monotonic_ns();
    remove_temporary_files(journal->directory_fd);
    struct segment_info *segments = NULL;
    size_t count = 0;
    if (segment_list(journal->directory_fd, &segments, &count) != 0) {
        return -1;
    }
    if (remove_compacted_inputs(journal, segments, &count) != 0) {
        free(segments);
        return -1;
    }
    for (size_t index = 0; index < count; index++) {
        int fd = -1;
        int result = scan_segment(journal, &segments[index], index + 1 == count, &fd);
        if (result < 0) {
            free(segments);
            return -1;
        }
        if (fd >= 0) {
            journal->active_fd = fd;
        }
    }
    free(segments);
    if (journal->active_fd >= 0 && journal->active_size % JOURNAL_BLOCK_SIZE != 0) {
        // Records of the active segment start on block boundaries; append in a new segment.
        journal->roll_before_next_append = true;
    }
    journal->stats.recovery_ms = (double)(monotonic_ns() - started) / 1e6;
    return 0;
}
