#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto_broker.h>

// The index of the journal: the last record of each topic, the QoS 2 records waiting for PUBREL,
// and how many of those each client has. Recovery and the broker's thread change it through
// journal_apply while holding the index lock, and the compaction thread reads it under that lock.

/// The key of a pending QoS 2 record: the topic, a NUL byte and the payload's 64-bit hash, so the
/// release seen by the witness (topic and payload only) finds it.
static size_t pending_key(const struct journal *journal, const char *topic, uint16_t topic_len,
                          const void *payload, uint32_t payload_len, char *key, size_t capacity) {
    if ((size_t)topic_len + 9 > capacity) {
        return 0;
    }
    uint64_t hash = siphash24(journal->pending.hash_key, payload_len ? payload : "", payload_len);
    memcpy(key, topic, topic_len);
    key[topic_len] = '\0';
    memcpy(key + topic_len + 1, &hash, 8);
    return (size_t)topic_len + 9;
}

struct entry *journal_find_pending(struct journal *journal, const char *topic, uint16_t topic_len,
                                   const void *payload, uint32_t payload_len) {
    char key[65536 + 9];
    size_t length = pending_key(journal, topic, topic_len, payload, payload_len, key, sizeof(key));
    return length ? map_find(&journal->pending, key, length) : NULL;
}

/// Counts one more (`change` 1) or one less (-1) pending record of `client`.
static void count_pending_client(struct journal *journal, const char *client, int change) {
    if (!client) {
        return;
    }
    bool created = false;
    struct entry *entry = change > 0 ? map_upsert(&journal->pending_clients, client, strlen(client), &created)
                                     : map_find(&journal->pending_clients, client, strlen(client));
    if (!entry) {
        return;
    }
    if (change > 0) {
        entry->count++;
    } else if (entry->count <= 1) {
        map_remove(&journal->pending_clients, entry);
    } else {
        entry->count--;
    }
}

void journal_drop_pending(struct journal *journal, struct entry *pending) {
    count_pending_client(journal, pending->client, -1);
    journal->live_bytes -= pending->where.length;
    map_remove(&journal->pending, pending);
}

bool journal_client_has_pending(const struct journal *journal, const char *client) {
    return client && map_find(&journal->pending_clients, client, strlen(client)) != NULL;
}

static void evict_oldest_pending(struct entry *entry, void *context) {
    struct entry **oldest = context;
    if (!*oldest || entry->seq < (*oldest)->seq) {
        *oldest = entry;
    }
}

/// Copies a record's fields and location into an index entry and counts its bytes as live.
static void take_record(struct journal *journal, struct entry *entry, const struct journal_record *record,
                        const struct location *where) {
    entry->type = record->type;
    entry->qos = record->qos;
    entry->seq = record->seq;
    entry->written_at_ns = record->written_at_ns;
    entry->expiry_at = record->expiry_at;
    entry->where = *where;
    journal->live_bytes += where->length;
}

static void apply_pending(struct journal *journal, const struct journal_record *record,
                          const struct location *where, const uint8_t *copy) {
    char key[65536 + 9];
    size_t key_len = pending_key(journal, record->topic, record->topic_len, record->payload,
                                 record->payload_len, key, sizeof(key));
    bool created = false;
    struct entry *entry = key_len ? map_upsert(&journal->pending, key, key_len, &created) : NULL;
    uint8_t *owned = malloc(where->length);
    if (!entry || !owned) {
        free(owned);
        journal_log(MOSQ_LOG_WARNING, "out of memory while keeping a pending QoS 2 record; its PUBREL will be journaled without properties");
        return;
    }
    memcpy(owned, copy, where->length);
    if (!created) {
        journal->live_bytes -= entry->where.length;
        count_pending_client(journal, entry->client, -1);
        free(entry->record);
        free(entry->client);
        entry->client = NULL;
    }
    entry->record = owned;
    take_record(journal, entry, record, where);
    if (record->client_len) {
        entry->client = strndup(record->client, record->client_len);
    }
    count_pending_client(journal, entry->client, 1);
    if (journal->pending.count > journal->options.pending_limit) {
        struct entry *oldest = NULL;
        map_each(&journal->pending, evict_oldest_pending, &oldest);
        if (oldest) {
            journal_log(MOSQ_LOG_WARNING, "more than %u QoS 2 retained publishes wait for PUBREL; forgetting the oldest one",
                        journal->options.pending_limit);
            journal_drop_pending(journal, oldest);
        }
    }
}

static void apply_undo(struct journal *journal, const struct journal_record *record) {
    struct entry *entry = map_find(&journal->topics, record->topic, record->topic_len);
    if (!entry || entry->seq != record->undo_seq) {
        return;
    }
    journal->live_bytes -= entry->where.length;
    if (entry->type == RECORD_DELETE) {
        journal->tombstones--;
    }
    if (!entry->has_previous) {
        map_remove(&journal->topics, entry);
        return;
    }

    if (entry->record) {
        // During recovery the replay needs the previous record's bytes.
        free(entry->record);
        entry->record = NULL;
        if (journal_read_record(journal, &entry->previous, &entry->record) != 0) {
            journal_log(MOSQ_LOG_ERR, "cannot read the record before an undone publish: %s; the topic keeps no journaled value",
                        strerror(errno));
            map_remove(&journal->topics, entry);
            return;
        }
    }

    entry->type = entry->previous_type;
    entry->qos = entry->previous_qos;
    entry->seq = entry->previous_seq;
    entry->written_at_ns = entry->previous_written_at_ns;
    entry->expiry_at = entry->previous_expiry_at;
    entry->where = entry->previous;
    entry->has_previous = false;
    journal->live_bytes += entry->where.length;
    if (entry->type == RECORD_DELETE) {
        journal->tombstones++;
    }
}

static void apply_locked(struct journal *journal, const struct journal_record *record,
                         const struct location *where, const uint8_t *copy) {
    if (record->type == RECORD_PENDING) {
        apply_pending(journal, record, where, copy);
        return;
    }
    if (record->type == RECORD_UNDO) {
        apply_undo(journal, record);
        return;
    }
    struct entry *released = journal_find_pending(journal, record->topic, record->topic_len,
                                                  record->payload, record->payload_len);
    if (released) {
        journal_drop_pending(journal, released);
    }
    bool created = false;
    struct entry *entry = map_upsert(&journal->topics, record->topic, record->topic_len, &created);
    if (!entry) {
        journal_log(MOSQ_LOG_ERR, "out of memory while indexing the journal");
        return;
    }
    if (!created) {
        journal->live_bytes -= entry->where.length;
        if (entry->type == RECORD_DELETE) {
            journal->tombstones--;
        }
        entry->has_previous = true;
        entry->previous = entry->where;
        entry->previous_seq = entry->seq;
        entry->previous_type = entry->type;
        entry->previous_qos = entry->qos;
        entry->previous_expiry_at = entry->expiry_at;
        entry->previous_written_at_ns = entry->written_at_ns;
    }
    free(entry->record);
    entry->record = NULL;
    if (copy) {
        entry->record = malloc(where->length);
        if (entry->record) {
            memcpy(entry->record, copy, where->length);
        }
    }
    take_record(journal, entry, record, where);
    if (record->type == RECORD_DELETE) {
        journal->tombstones++;
    }
}

void journal_apply(struct journal *journal, const struct journal_record *record,
                   const struct location *where, const uint8_t *copy) {
    pthread_mutex_lock(&journal->index_lock);
    apply_locked(journal, record, where, copy);
    pthread_mutex_unlock(&journal->index_lock);
}
