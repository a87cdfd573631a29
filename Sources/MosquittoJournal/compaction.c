#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto_broker.h>

// Compaction replaces the sealed segments with one dense segment that holds only their live
// records: the current record of each topic and the QoS 2 records still waiting for PUBREL.
// The broker's thread only seals the active segment and starts a thread. That thread reads the
// sealed segments in order and keeps a record when the index (read under its lock) still names
// it. It writes and syncs the kept records as a temporary file, renames that over the newest
// sealed segment and removes the others. Records keep their bytes and sequence numbers, so a stop
// at any point leaves segments that recovery reads to the same state. Recovery also removes the
// segments older than a dense one, which a compaction that stopped early left behind.

struct dropped_topic {
    char *key;
    size_t key_len;
    uint64_t seq;
};

struct compaction {
    pthread_t thread;
    atomic_int done;
    int result;
    int error;
    struct journal *journal;
    int directory_fd;
    uint64_t output_number;
    uint64_t sealed_bytes;
    size_t sealed_segments;
    uint64_t output_size;
    uint64_t copied_records;
    int64_t database_mtime_ns;
    struct dropped_topic *dropped;
    size_t dropped_count;
    size_t dropped_capacity;
    char temporary_name[48];
    int64_t started_ns;
    double start_pause_ms;
    double copy_ms;
};

int64_t database_mtime_ns(const struct journal *journal) {
    struct stat info;
    if (!journal->options.database_file || stat(journal->options.database_file, &info) != 0) {
        return 0;
    }
    return (int64_t)info.st_mtim.tv_sec * 1000000000 + info.st_mtim.tv_nsec;
}

/// A deleted or expired topic needs its record only while mosquitto.db may still contain an older
/// value of it. A database written after the deletion no longer contains the topic, because the
/// broker applies a deletion before it can save. Two seconds of margin cover timestamp granularity.
static bool tombstone_droppable(const struct journal_record *record, int64_t database_mtime_ns) {
    if (database_mtime_ns == 0) {
        return false;
    }
    int64_t gone_at_ns;
    if (record->type == RECORD_DELETE) {
        gone_at_ns = record->written_at_ns;
    } else if (record->expiry_at != 0) {
        gone_at_ns = record->expiry_at * 1000000000;
    } else {
        return false;
    }
    return gone_at_ns < database_mtime_ns - 2000000000LL && gone_at_ns < wall_clock_ns();
}

static void remember_dropped(struct compaction *compaction, const struct journal_record *record) {
    if (compaction->dropped_count == compaction->dropped_capacity) {
        size_t capacity = compaction->dropped_capacity ? compaction->dropped_capacity * 2 : 64;
        struct dropped_topic *grown = realloc(compaction->dropped, capacity * sizeof(*grown));
        if (!grown) {
            return; // The record is not copied; the index keeps the topic until the next start.
        }
        compaction->dropped = grown;
        compaction->dropped_capacity = capacity;
    }
    char *key = malloc(record->topic_len);
    if (!key) {
        return;
    }
    memcpy(key, record->topic, record->topic_len);
    compaction->dropped[compaction->dropped_count++] = (struct dropped_topic){key, record->topic_len, record->seq};
}

enum liveness { RECORD_DEAD, RECORD_LIVE, RECORD_DROP };

/// Checks, under the index lock, whether the index still names this record.
static enum liveness liveness_of(struct compaction *compaction, const struct journal_record *record) {
    struct journal *journal = compaction->journal;
    enum liveness result = RECORD_DEAD;
    pthread_mutex_lock(&journal->index_lock);
    if (record->type == RECORD_PENDING) {
        struct entry *pending = journal_find_pending(journal, record->topic, record->topic_len, record->payload, record->payload_len);
        result = pending && pending->seq == record->seq ? RECORD_LIVE : RECORD_DEAD;
    } else if (record->type == RECORD_SET || record->type == RECORD_DELETE) {
        struct entry *entry = map_find(&journal->topics, record->topic, record->topic_len);
        if (entry && entry->seq == record->seq) {
            result = tombstone_droppable(record, compaction->database_mtime_ns) ? RECORD_DROP : RECORD_LIVE;
        }
    }
    pthread_mutex_unlock(&journal->index_lock);
    return result;
}

struct output {
    int fd;
    uint8_t *buffer;
    size_t capacity;
    size_t used;
    uint64_t flushed;
};

/// Appends to the output, writing and syncing each full buffer, so that the file system never has
/// much of the output to flush at once (which would delay the broker's own fdatasync calls).
static int output_append(struct output *output, const uint8_t *data, size_t length) {
    if (output->used + length > output->capacity && output->used > 0) {
        if (pwrite(output->fd, output->buffer, output->used, (off_t)output->flushed) != (ssize_t)output->used
            || fdatasync(output->fd) != 0) {
            return -1;
        }
        output->flushed += output->used;
        output->used = 0;
    }
    if (length > output->capacity) {
        uint8_t *grown = realloc(output->buffer, length);
        if (!grown) {
            errno = ENOMEM;
            return -1;
        }
        output->buffer = grown;
        output->capacity = length;
    }
    memcpy(output->buffer + output->used, data, length);
    output->used += length;
    return 0;
}

static int copy_segment(struct compaction *compaction, uint64_t number, struct output *output) {
    char name[32];
    segment_name(number, name, sizeof(name));
    int fd = openat(compaction->directory_fd, name, O_RDONLY | O_CLOEXEC);
    uint64_t header_number = 0;
    bool dense = false;
    if (fd < 0 || segment_read_header(fd, &header_number, &dense) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }

    struct segment_reader reader;
    if (reader_open(&reader, fd, dense) != 0) {
        close(fd);
        return -1;
    }
    int result;
    while (true) {
        struct journal_record record;
        uint64_t offset = 0;
        uint32_t size = 0;
        result = reader_next(&reader, &record, &offset, &size);
        if (result != 1) {
            break;
        }
        enum liveness liveness = liveness_of(compaction, &record);
        if (liveness == RECORD_LIVE) {
            if (output_append(output, reader.buffer + reader.start, size) != 0) {
                result = -2;
                break;
            }
            compaction->copied_records++;
        } else if (liveness == RECORD_DROP) {
            remember_dropped(compaction, &record);
        }
    }
    reader_close(&reader);
    close(fd);

    // A test's crash point after the first input: the buffered records go to the file first, so
    // that the crash leaves a partial output behind.
    if (result == 0 && compaction->journal->options.test_crash_point == CRASH_POINT_COMPACTION_PARTIAL && output->used > 0
        && pwrite(output->fd, output->buffer, output->used, (off_t)output->flushed) == (ssize_t)output->used) {
        crash_point_reached(&compaction->journal->options, CRASH_POINT_COMPACTION_PARTIAL);
    }
    if (result < 0) {
        // A sealed segment ends cleanly; anything else means it cannot be read whole now.
        errno = result == -1 ? EIO : errno;
        return -1;
    }
    return 0;
}

static int compact(struct compaction *compaction) {
    struct segment_info *segments = NULL;
    size_t count = 0;
    if (segment_list(compaction->directory_fd, &segments, &count) != 0) {
        return -1;
    }
    struct output output = {.fd = -1, .capacity = 1u << 20, .flushed = SEGMENT_HEADER_SIZE};
    output.buffer = malloc(output.capacity);
    unlinkat(compaction->directory_fd, compaction->temporary_name, 0);
    int rc = output.buffer ? segment_create(compaction->directory_fd, compaction->temporary_name, compaction->output_number,
                                            true, &output.fd) : -1;

    for (size_t index = 0; rc == 0 && index < count && segments[index].number <= compaction->output_number; index++) {
        rc = copy_segment(compaction, segments[index].number, &output);
    }

    if (rc == 0 && output.used > 0
        && pwrite(output.fd, output.buffer, output.used, (off_t)output.flushed) != (ssize_t)output.used) {
        rc = -1;
    }
    compaction->output_size = output.flushed + output.used;
    if (rc == 0 && fdatasync(output.fd) != 0) {
        rc = -1;
    }
    if (rc == 0) {
        crash_point_reached(&compaction->journal->options, CRASH_POINT_COMPACTION_WRITTEN);
    }
    int saved = errno;
    if (output.fd >= 0) {
        close(output.fd);
    }
    free(output.buffer);

    char name[32];
    segment_name(compaction->output_number, name, sizeof(name));
    if (rc == 0 && (renameat(compaction->directory_fd, compaction->temporary_name, compaction->directory_fd, name) != 0
                    || fsync_directory(compaction->directory_fd) != 0)) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        unlinkat(compaction->directory_fd, compaction->temporary_name, 0);
        free(segments);
        errno = saved;
        return -1;
    }

    crash_point_reached(&compaction->journal->options, CRASH_POINT_COMPACTION_RENAMED);
    for (size_t index = 0; index < count && segments[index].number < compaction->output_number; index++) {
        segment_name(segments[index].number, name, sizeof(name));
        unlinkat(compaction->directory_fd, name, 0);
    }
    free(segments);
    // When this sync does not happen, recovery removes the same segments, which are older than a dense one.
    fsync_directory(compaction->directory_fd);
    return 0;
}

static void *compaction_thread(void *opaque) {
    struct compaction *compaction = opaque;
    int64_t started = monotonic_ns();
    compaction->result = compact(compaction);
    compaction->error = errno;
    compaction->copy_ms = (double)(monotonic_ns() - started) / 1e6;
    atomic_store(&compaction->done, 1);
    return NULL;
}

static void compaction_destroy(struct compaction *compaction) {
    for (size_t index = 0; index < compaction->dropped_count; index++) {
        free(compaction->dropped[index].key);
    }
    free(compaction->dropped);
    if (compaction->directory_fd >= 0) {
        close(compaction->directory_fd);
    }
    free(compaction);
}

int compaction_start(struct journal *journal, int64_t database_mtime) {
    if (journal->compaction) {
        return 0;
    }
    int64_t started = monotonic_ns();
    struct compaction *compaction = calloc(1, sizeof(*compaction));
    if (!compaction) {
        return -1;
    }
    compaction->journal = journal;
    compaction->database_mtime_ns = database_mtime;
    compaction->directory_fd = dup(journal->directory_fd);
    if (compaction->directory_fd < 0) {
        free(compaction);
        return -1;
    }

    // Seal the active segment, so that every input stays unchanged while the thread reads it.
    compaction->output_number = journal->active_number;
    compaction->sealed_bytes = journal->total_bytes;
    compaction->sealed_segments = journal->segment_count;
    if (journal_roll(journal) != 0) {
        compaction_destroy(compaction);
        return -1;
    }
    snprintf(compaction->temporary_name, sizeof(compaction->temporary_name), "%016" PRIx64 ".compact.tmp",
             compaction->output_number);

    compaction->started_ns = started;
    atomic_init(&compaction->done, 0);
    if (pthread_create(&compaction->thread, NULL, compaction_thread, compaction) != 0) {
        compaction_destroy(compaction);
        return -1;
    }
    compaction->start_pause_ms = (double)(monotonic_ns() - started) / 1e6;
    journal->compaction = compaction;
    return 0;
}

/// Removes the deleted topics whose record the compaction did not copy, unless a newer record came.
static void drop_topics(struct journal *journal, const struct compaction *compaction) {
    pthread_mutex_lock(&journal->index_lock);
    for (size_t index = 0; index < compaction->dropped_count; index++) {
        const struct dropped_topic *dropped = &compaction->dropped[index];
        struct entry *entry = map_find(&journal->topics, dropped->key, dropped->key_len);
        if (entry && entry->seq == dropped->seq) {
            journal->live_bytes -= entry->where.length;
            if (entry->type == RECORD_DELETE) {
                journal->tombstones--;
            }
            map_remove(&journal->topics, entry);
        }
    }
    pthread_mutex_unlock(&journal->index_lock);
}

int compaction_poll(struct journal *journal, bool wait) {
    struct compaction *compaction = journal->compaction;
    if (!compaction || (!wait && !atomic_load(&compaction->done))) {
        return 0;
    }
    int64_t pause_started = monotonic_ns();
    pthread_join(compaction->thread, NULL);
    journal->compaction = NULL;
    if (compaction->result != 0) {
        journal_log(MOSQ_LOG_ERR, "compaction failed: %s; the journal keeps its segments and retries in 60 s",
                    strerror(compaction->error));
        journal->next_compaction_attempt_ns = monotonic_ns() + 60000000000LL;
        compaction_destroy(compaction);
        return 0;
    }

    drop_topics(journal, compaction);
    uint64_t before = journal->total_bytes;
    journal->total_bytes = journal->total_bytes - compaction->sealed_bytes + compaction->output_size;
    journal->segment_count = journal->segment_count - compaction->sealed_segments + 1;
    double pause_ms = compaction->start_pause_ms + (wait ? 0 : (double)(monotonic_ns() - pause_started) / 1e6);
    journal->stats.compactions++;
    journal->stats.last_compaction_ms = (double)(monotonic_ns() - compaction->started_ns) / 1e6;
    journal->stats.last_compaction_pause_ms = pause_ms;
    if (pause_ms > journal->stats.max_compaction_pause_ms) {
        journal->stats.max_compaction_pause_ms = pause_ms;
    }
    journal_log(MOSQ_LOG_NOTICE,
                "compacted the journal from %" PRIu64 " to %" PRIu64 " bytes (%" PRIu64 " live records, %zu deleted topics dropped) in %.1f ms on its own thread; the broker paused %.2f ms",
                before, journal->total_bytes, compaction->copied_records, compaction->dropped_count, compaction->copy_ms, pause_ms);
    compaction_destroy(compaction);
    return 1;
}

void compaction_free(struct journal *journal) {
    if (journal->compaction) {
        compaction_poll(journal, true);
    }
}
