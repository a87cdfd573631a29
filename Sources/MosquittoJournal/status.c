#include "journal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

// The status file is read by `supervisor status`. It contains counters only, never a topic or a
// payload, and lives outside the encrypted store. It is replaced with rename, so a reader sees
// one complete version. Format: one "name value" pair per line.

void status_write(struct journal *journal, const char *witness_state) {
    if (!journal->options.status_file) {
        return;
    }
    char temporary[4096];
    if (snprintf(temporary, sizeof(temporary), "%s.tmp", journal->options.status_file) >= (int)sizeof(temporary)) {
        return;
    }
    FILE *file = fopen(temporary, "w");
    if (!file) {
        return;
    }

    const struct journal_stats *stats = &journal->stats;
    fprintf(file, "format 1\n");
    fprintf(file, "updated_at_ns %lld\n", (long long)wall_clock_ns());
    fprintf(file, "directory %s\n", journal->options.directory);
    fprintf(file, "journal_bytes %llu\n", (unsigned long long)journal->total_bytes);
    fprintf(file, "live_bytes %llu\n", (unsigned long long)journal->live_bytes);
    fprintf(file, "segments %zu\n", journal->segment_count);
    fprintf(file, "topics %zu\n", journal->topics.count - journal->tombstones);
    fprintf(file, "tombstones %zu\n", journal->tombstones);
    fprintf(file, "pending_qos2 %zu\n", journal->pending.count);
    fprintf(file, "records_written %llu\n", (unsigned long long)stats->records_written);
    fprintf(file, "last_sync_at_ns %lld\n", (long long)stats->last_sync_at_ns);
    fprintf(file, "failed_writes %llu\n", (unsigned long long)stats->failed_writes);
    fprintf(file, "last_failure_at_ns %lld\n", (long long)stats->last_failure_at_ns);
    fprintf(file, "rejected_publishes %llu\n", (unsigned long long)stats->rejected_publishes);
    fprintf(file, "undo_records %llu\n", (unsigned long long)stats->undo_records);
    fprintf(file, "observed_records %llu\n", (unsigned long long)stats->observed_records);
    fprintf(file, "recovered_records %llu\n", (unsigned long long)stats->recovered_records);
    fprintf(file, "truncated_bytes %llu\n", (unsigned long long)stats->truncated_bytes);
    fprintf(file, "recovery_ms %.3f\n", stats->recovery_ms);
    fprintf(file, "replayed_messages %llu\n", (unsigned long long)stats->replayed_messages);
    fprintf(file, "replayed_deletions %llu\n", (unsigned long long)stats->replayed_deletions);
    fprintf(file, "replay_queue_ms %.3f\n", stats->replay_queue_ms);
    fprintf(file, "compactions %llu\n", (unsigned long long)stats->compactions);
    fprintf(file, "compacting %d\n", journal->compaction != NULL);
    fprintf(file, "last_compaction_ms %.3f\n", stats->last_compaction_ms);
    fprintf(file, "last_compaction_pause_ms %.3f\n", stats->last_compaction_pause_ms);
    fprintf(file, "max_compaction_pause_ms %.3f\n", stats->max_compaction_pause_ms);
    fprintf(file, "witness %s\n", witness_state);

    bool complete = fflush(file) == 0;
    fclose(file);
    if (complete) {
        rename(temporary, journal->options.status_file);
    } else {
        unlink(temporary);
    }
    journal->last_status_ns = monotonic_ns();
}
