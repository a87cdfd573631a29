#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto_broker.h>

void journal_log(int level, const char *format, ...) {
    char message[1024];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof(message), format, arguments);
    va_end(arguments);
    // Mosquitto starts its own error lines with "Error: ", and the supervisor quotes such lines
    // when the broker exits.
    mosquitto_log_printf(level, level == MOSQ_LOG_ERR ? "Error: journal: %s" : "journal: %s", message);
}

int64_t wall_clock_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

bool journal_is_expired(int64_t expiry_at, int64_t now_s) {
    return expiry_at != 0 && expiry_at <= now_s;
}

static uint64_t round_to_block(uint64_t size) {
    return (size + JOURNAL_BLOCK_SIZE - 1) / JOURNAL_BLOCK_SIZE * JOURNAL_BLOCK_SIZE;
}

int journal_read_record(struct journal *journal, const struct location *where, uint8_t **copy) {
    char name[32];
    segment_name(where->segment, name, sizeof(name));
    int fd = where->segment == journal->active_number && journal->active_fd >= 0
        ? journal->active_fd : openat(journal->directory_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    uint8_t *buffer = malloc(where->length);
    ssize_t got = buffer ? pread(fd, buffer, where->length, (off_t)where->offset) : -1;
    int saved = errno;
    if (fd != journal->active_fd) {
        close(fd);
    }
    if (got != (ssize_t)where->length) {
        free(buffer);
        errno = got < 0 ? saved : EIO;
        return -1;
    }
    *copy = buffer;
    return 0;
}

static int ensure_scratch(struct journal *journal, size_t size) {
    if (size <= journal->scratch_capacity) {
        return 0;
    }
    uint8_t *grown = realloc(journal->scratch, size);
    if (!grown) {
        errno = ENOMEM;
        return -1;
    }
    journal->scratch = grown;
    journal->scratch_capacity = size;
    return 0;
}

int journal_roll(struct journal *journal) {
    char name[32];
    uint64_t number = journal->active_number + 1;
    segment_name(number, name, sizeof(name));
    int fd = -1;
    if (preparation_take(journal, number, name, &fd) != 0 && segment_create(journal->directory_fd, name, number, false, &fd) != 0) {
        return -1;
    }
    if (fsync_directory(journal->directory_fd) != 0) {
        int saved = errno;
        if (fd >= 0) {
            close(fd);
        }
        errno = saved;
        return -1;
    }
    if (journal->active_fd >= 0) {
        close(journal->active_fd);
    }
    journal->active_fd = fd;
    journal->active_number = number;
    journal->active_size = SEGMENT_HEADER_SIZE;
    journal->total_bytes += SEGMENT_HEADER_SIZE;
    journal->segment_count++;
    journal->roll_before_next_append = false;
    preparation_start(journal);
    return 0;
}

static int write_at(int fd, const uint8_t *data, size_t length, uint64_t offset) {
    while (length > 0) {
        ssize_t written = pwrite(fd, data, length, (off_t)offset);
        if (written < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += written;
        length -= (size_t)written;
        offset += (uint64_t)written;
    }
    return 0;
}

static int append_failed(struct journal *journal) {
    journal->stats.failed_writes++;
    journal->stats.last_failure_at_ns = wall_clock_ns();
    return -1;
}

int journal_append(struct journal *journal, struct journal_record *record, struct location *where) {
    if (journal->active_needs_truncate) {
        if (ftruncate(journal->active_fd, (off_t)journal->active_size) != 0) {
            return append_failed(journal);
        }
        journal->active_needs_truncate = false;
    }
    size_t size = record_size(record);
    uint64_t padded = round_to_block(size);
    bool full = journal->active_size > SEGMENT_HEADER_SIZE && journal->active_size + padded > journal->options.segment_bytes;
    if (journal->active_fd < 0 || journal->roll_before_next_append || full) {
        if (journal_roll(journal) != 0) {
            return append_failed(journal);
        }
    }
    if (ensure_scratch(journal, padded) != 0) {
        return append_failed(journal);
    }
    record->seq = journal->next_seq;
    record->written_at_ns = wall_clock_ns();
    record_encode(record, journal->scratch);
    memset(journal->scratch + size, 0, padded - size);

    if (write_at(journal->active_fd, journal->scratch, padded, journal->active_size) != 0
        || fdatasync(journal->active_fd) != 0) {
        // Nothing of this record may stay: it was not acknowledged. After a failed fdatasync the
        // file's cached pages are in an unknown state, so later records go to a new segment.
        int saved = errno;
        if (ftruncate(journal->active_fd, (off_t)journal->active_size) != 0) {
            journal->active_needs_truncate = true;
        }
        journal->roll_before_next_append = true;
        errno = saved;
        return append_failed(journal);
    }
    where->segment = journal->active_number;
    where->offset = journal->active_size;
    where->length = (uint32_t)size;
    journal->active_size += padded;
    journal->total_bytes += padded;
    journal->next_seq++;
    journal->stats.records_written++;
    journal->stats.syncs++;
    journal->stats.last_sync_at_ns = record->written_at_ns;
    return 0;
}

bool journal_needs_compaction(const struct journal *journal) {
    uint64_t garbage_limit = journal->live_bytes * 2 + journal->options.compact_min_bytes;
    return journal->compaction == NULL && journal->total_bytes > garbage_limit;
}

int journal_open(struct journal *journal) {
    journal->directory_fd = -1;
    journal->active_fd = -1;
    journal->next_seq = 1;
    crc32c(0, NULL, 0);
    pthread_mutex_init(&journal->index_lock, NULL);
    if (map_init(&journal->topics) != 0 || map_init(&journal->pending) != 0 || map_init(&journal->pending_clients) != 0) {
        return -1;
    }
    if (mkdir(journal->options.directory, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    journal->directory_fd = open(journal->options.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (journal->directory_fd < 0) {
        return -1;
    }
    return recovery_run(journal);
}

void journal_close(struct journal *journal) {
    if (journal->active_fd >= 0) {
        close(journal->active_fd);
        journal->active_fd = -1;
    }
    if (journal->directory_fd >= 0) {
        close(journal->directory_fd);
        journal->directory_fd = -1;
    }
    map_free(&journal->topics);
    map_free(&journal->pending);
    map_free(&journal->pending_clients);
    pthread_mutex_destroy(&journal->index_lock);
    free(journal->scratch);
    journal->scratch = NULL;
    free(journal->awaiting.undo_topic);
    memset(&journal->awaiting, 0, sizeof(journal->awaiting));
}
