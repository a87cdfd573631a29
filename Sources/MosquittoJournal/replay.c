#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mqtt_protocol.h>

// Replay gives the broker the journal's last record of every topic, through
// mosquitto_broker_publish_copy during plugin initialization. Mosquitto 2.0.11 queues these
// messages and applies them at the start of its first main-loop pass, before it reads any client
// packet. Applying a retained message also delivers it to matching subscriptions, including the
// persistent sessions restored from mosquitto.db, which may have received it before the restart.
// So, until the first tick (the end of that first pass), the plugin's ACL callback denies every
// read of a replayed topic: the broker stores the retained message but queues it to no session.

static bool replay_window_open;

struct replay_context {
    struct journal *journal;
    int64_t now_s;
    uint64_t failures;
};

static int publish_deletion(const char *topic) {
    return mosquitto_broker_publish_copy(NULL, topic, 0, NULL, 0, true, NULL);
}

static int publish_message(const struct journal_record *record, const char *topic, int64_t now_s) {
    mosquitto_property *properties = NULL;
    if (record->properties_len && properties_decode(record->properties, record->properties_len, &properties) != 0) {
        journal_log(MOSQ_LOG_WARNING, "a journaled message has unreadable properties; it is replayed without them");
        properties = NULL;
    }
    if (record->expiry_at != 0) {
        int64_t remaining = record->expiry_at - now_s;
        mosquitto_property_add_int32(&properties, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                     (uint32_t)(remaining > 0 ? remaining : 1));
    }
    int rc = mosquitto_broker_publish_copy(NULL, topic, (int)record->payload_len, record->payload,
                                           record->qos, true, properties);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_property_free_all(&properties);
    }
    return rc;
}

static void replay_entry(struct entry *entry, void *opaque) {
    struct replay_context *context = opaque;
    struct journal *journal = context->journal;
    uint8_t *copy = entry->record;
    entry->record = NULL;
    if (!copy && journal_read_record(journal, &entry->where, &copy) != 0) {
        journal_log(MOSQ_LOG_ERR, "cannot read a journaled record for replay: %s", strerror(errno));
        context->failures++;
        return;
    }
    struct journal_record record;
    uint32_t size = 0;
    int rc;
    if (record_decode(copy, entry->where.length, &record, &size) != DECODE_OK) {
        rc = MOSQ_ERR_MALFORMED_PACKET;
    } else if (record.type == RECORD_DELETE || journal_is_expired(record.expiry_at, context->now_s)) {
        // Removes a value that mosquitto.db may still hold from before the deletion.
        rc = publish_deletion(entry->key);
        journal->stats.replayed_deletions++;
    } else {
        rc = publish_message(&record, entry->key, context->now_s);
        journal->stats.replayed_messages++;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        context->failures++;
    }
    free(copy);
}

int replay_queue(struct journal *journal) {
    int64_t started = monotonic_ns();
    struct replay_context context = {.journal = journal, .now_s = wall_clock_ns() / 1000000000};
    replay_window_open = true;
    map_each(&journal->topics, replay_entry, &context);
    journal->stats.replay_queue_ms = (double)(monotonic_ns() - started) / 1e6;
    if (context.failures > 0) {
        journal_log(MOSQ_LOG_ERR, "%llu journaled topics could not be given to the broker; the broker would start without them",
                    (unsigned long long)context.failures);
        errno = EIO;
        return -1;
    }
    return 0;
}

bool replay_window_denies(const struct journal *journal, const char *topic) {
    return replay_window_open && map_find(&journal->topics, topic, strlen(topic)) != NULL;
}

void replay_window_close(struct journal *journal) {
    (void)journal;
    replay_window_open = false;
}
