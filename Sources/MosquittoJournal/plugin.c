#define _GNU_SOURCE
#include "journal.h"
#include "mosquitto_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

// Entry points and event handlers. Every handler runs on the broker's single thread.
//
// MOSQ_EVT_MESSAGE runs after the ACL and size checks and before the broker stores the message
// and sends PUBACK (QoS 1) or PUBREC (QoS 2). The handler writes one record for each retained
// publish and returns only after fdatasync. When that fails it returns an error, so the broker
// drops the publish and disconnects the client without acknowledging it.

static const char clean_stop_file[] = "clean-stop";

struct plugin {
    mosquitto_plugin_id_t *identifier;
    struct journal journal;
    struct witness witness;
    bool replay_window_closed;
    uint64_t log_suppressed;
};


static bool should_log(struct plugin *plugin) {
    uint64_t count = plugin->log_suppressed++;
    return count < 10 || count % 1000 == 0;
}

// ---------------------------------------------------------------------------------------------
// Awaiting publishes and undo

static void clear_awaiting(struct journal *journal) {
    free(journal->awaiting.undo_topic);
    memset(&journal->awaiting, 0, sizeof(journal->awaiting));
}

/// Called at every event that starts new work: the previous QoS 0 or 1 retained publish is
/// finished by then. When the witness did not see it applied, the broker dropped it after the
/// callback (its receive quota was full), and an undo record takes it back out of the journal.
static void finish_awaiting(struct plugin *plugin) {
    struct journal *journal = &plugin->journal;
    if (!journal->awaiting.active) {
        return;
    }
    char *topic = journal->awaiting.undo_topic;
    uint64_t seq = journal->awaiting.seq;
    journal->awaiting.undo_topic = NULL;
    clear_awaiting(journal);
    struct entry *entry = topic ? map_find(&journal->topics, topic, strlen(topic)) : NULL;
    if (entry && entry->seq == seq) {
        struct journal_record record = {
            .type = RECORD_UNDO, .undo_seq = seq, .topic = topic, .topic_len = (uint16_t)strlen(topic),
        };
        struct location where;
        if (journal_append(journal, &record, &where) == 0) {
            journal_apply(journal, &record, &where, NULL);
            journal->stats.undo_records++;
            journal_log(MOSQ_LOG_NOTICE, "the broker dropped a journaled retained publish (receive quota exceeded); wrote an undo record");
        } else {
            journal_log(MOSQ_LOG_ERR, "cannot write the undo record of a retained publish the broker dropped: %s", strerror(errno));
        }
    }
    free(topic);
}

// ---------------------------------------------------------------------------------------------
// MOSQ_EVT_MESSAGE

static bool is_sys_topic(const char *topic) {
    return strncmp(topic, "$SYS", 4) == 0 && (topic[4] == '/' || topic[4] == '\0');
}

static int reject(struct plugin *plugin, const struct mosquitto *client, const char *reason) {
    plugin->journal.stats.rejected_publishes++;
    if (should_log(plugin)) {
        journal_log(MOSQ_LOG_ERR, "rejected a retained publish from client %s: %s; the client is disconnected without acknowledgement",
                    mosquitto_client_id(client), reason);
    }
    return MOSQ_ERR_UNKNOWN;
}

static int on_message(int event, void *event_data, void *userdata) {
    (void)event;
    struct plugin *plugin = userdata;
    struct journal *journal = &plugin->journal;
    struct mosquitto_evt_message *message = event_data;
    if (!message->retain || is_sys_topic(message->topic)) {
        return MOSQ_ERR_SUCCESS;
    }
    finish_awaiting(plugin);
    size_t topic_len = strlen(message->topic);
    const char *client_id = mosquitto_client_id(message->client);
    bool dollar_topic = message->topic[0] == '$';
    bool pending = message->qos == 2;
    if (topic_len > 65535) {
        return reject(plugin, message->client, "the topic is longer than 65535 bytes");
    }
    // No wildcard subscription of the witness matches a topic that starts with '$', so the plugin
    // would never see the broker apply a QoS 2 publish there at its PUBREL.
    if (pending && dollar_topic) {
        return reject(plugin, message->client,
                      "QoS 2 retained publishes to topics that start with $ are not supported in journal mode; publish them with QoS 0 or 1");
    }

    if (pending && !plugin->witness.subscribed) {
        return reject(plugin, message->client, "QoS 2 needs the journal witness, which is not subscribed yet");
    }
    uint32_t interval = 0;
    enum expiry_result expiry = publish_expiry_interval(message->client, message, &interval);
    if (expiry == EXPIRY_UNKNOWN) {
        return reject(plugin, message->client, "its message expiry interval cannot be read from the broker's packet buffer");
    }
    uint8_t *properties = NULL;
    uint32_t properties_len = 0;
    if (properties_encode(message->properties, &properties, &properties_len) != 0) {
        return reject(plugin, message->client, "out of memory");
    }
    struct journal_record record = {
        .type = pending ? RECORD_PENDING : (message->payloadlen ? RECORD_SET : RECORD_DELETE),
        .qos = message->qos,
        .expiry_at = expiry == EXPIRY_FOUND && interval > 0 ? wall_clock_ns() / 1000000000 + interval : 0,
        .topic = message->topic,
        .topic_len = (uint16_t)topic_len,
        .client = pending ? client_id : NULL,
        .client_len = pending && client_id ? (uint16_t)strnlen(client_id, 65535) : 0,
        .properties = properties,
        .properties_len = properties_len,
        .payload = message->payload,
        .payload_len = message->payloadlen,
    };

    struct location where;
    int rc = journal_append(journal, &record, &where);
    free(properties);
    if (rc != 0) {
        return reject(plugin, message->client, strerror(errno));
    }
    journal_apply(journal, &record, &where, pending ? journal->scratch : NULL);
    if (!pending && !dollar_topic) {
        journal->awaiting.active = true;
        journal->awaiting.topic = message->topic;
        journal->awaiting.payload = message->payload;
        journal->awaiting.payload_len = message->payloadlen;
        journal->awaiting.seq = record.seq;
        if (plugin->witness.subscribed && journal_client_has_pending(journal, client_id)) {
            journal->awaiting.undo_topic = strdup(message->topic);
        }
    }
    return MOSQ_ERR_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Retained changes that the witness reports

/// Journals a retained change the broker applied: the release of a pending QoS 2 publish, or a
/// change that never passed MOSQ_EVT_MESSAGE (a will message, another plugin's publish).
static void witness_observed(struct plugin *plugin, const struct mosquitto_evt_acl_check *check) {
    struct journal *journal = &plugin->journal;
    if (journal->awaiting.active && journal->awaiting.topic == check->topic && journal->awaiting.payload == check->payload
        && journal->awaiting.payload_len == check->payloadlen) {
        clear_awaiting(journal);
        return;
    }
    size_t topic_len = strlen(check->topic);
    if (topic_len > 65535) {
        return;
    }
    struct entry *pending = journal_find_pending(journal, check->topic, (uint16_t)topic_len, check->payload, check->payloadlen);
    struct journal_record record = {
        .type = check->payloadlen ? RECORD_SET : RECORD_DELETE,
        .qos = check->qos,
        .topic = check->topic,
        .topic_len = (uint16_t)topic_len,
        .payload = check->payload,
        .payload_len = check->payloadlen,
        .flags = RECORD_FLAG_OBSERVED,
    };

    struct journal_record original;
    uint32_t size = 0;
    if (pending && pending->record && record_decode(pending->record, pending->where.length, &original, &size) == DECODE_OK) {
        record.flags = 0;
        record.qos = original.qos;
        record.expiry_at = original.expiry_at;
        record.properties = original.properties;
        record.properties_len = original.properties_len;
    }

    struct location where;
    if (journal_append(journal, &record, &where) != 0) {
        journal_log(MOSQ_LOG_ERR, "cannot journal a retained change the broker applied (%s): %s; it is lost if the broker stops before mosquitto.db is saved",
                    pending ? "QoS 2 release" : "will or plugin message", strerror(errno));
        return;
    }
    journal_apply(journal, &record, &where, NULL);
    if (!pending) {
        journal->stats.observed_records++;
    }
}

static int on_acl_check(int event, void *event_data, void *userdata) {
    (void)event;
    struct plugin *plugin = userdata;
    struct mosquitto_evt_acl_check *check = event_data;
    if (check->access == MOSQ_ACL_READ && check->retain && replay_window_denies(&plugin->journal, check->topic)) {
        return MOSQ_ERR_ACL_DENIED;
    }
    if (witness_is(&plugin->witness, check->client)) {
        if (check->access == MOSQ_ACL_SUBSCRIBE && strcmp(check->topic, "#") == 0) {
            if (!plugin->witness.subscribed) {
                plugin->witness.subscribed = true;
                status_write(&plugin->journal, "subscribed");
            }
            return MOSQ_ERR_SUCCESS;
        }
        if (check->access == MOSQ_ACL_READ && check->retain) {
            witness_observed(plugin, check);
        }
        return MOSQ_ERR_ACL_DENIED;
    }
    if (check->access != MOSQ_ACL_READ) {
        finish_awaiting(plugin);
    }
    return plugin->journal.options.acl_allow_by_default ? MOSQ_ERR_SUCCESS : MOSQ_ERR_PLUGIN_DEFER;
}

static int on_basic_auth(int event, void *event_data, void *userdata) {
    (void)event;
    struct plugin *plugin = userdata;
    struct mosquitto_evt_basic_auth *auth = event_data;
    finish_awaiting(plugin);
    if (witness_is(&plugin->witness, auth->client) && auth->username && auth->password
        && strcmp(auth->username, "journal-witness") == 0 && strcmp(auth->password, plugin->witness.password) == 0) {
        return MOSQ_ERR_SUCCESS;
    }
    return MOSQ_ERR_PLUGIN_DEFER;
}

static int on_disconnect(int event, void *event_data, void *userdata) {
    (void)event;
    (void)event_data;
    finish_awaiting(userdata);
    return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata) {
    (void)event;
    (void)event_data;
    struct plugin *plugin = userdata;
    struct journal *journal = &plugin->journal;
    finish_awaiting(plugin);
    if (!plugin->replay_window_closed) {
        replay_window_close(journal);
        plugin->replay_window_closed = true;
    }
    witness_tick(&plugin->witness, &journal->options);
    preparation_poll(journal);
    int64_t now = monotonic_ns();
    if (journal->compaction) {
        compaction_poll(journal, false);
    } else if (journal_needs_compaction(journal) && now >= journal->next_compaction_attempt_ns) {
        if (compaction_start(journal, database_mtime_ns(journal)) != 0) {
            journal_log(MOSQ_LOG_ERR, "cannot start a compaction: %s; retrying in 60 s", strerror(errno));
            journal->next_compaction_attempt_ns = now + 60000000000LL;
        }
    }
    if (now - journal->last_status_ns >= 1000000000LL) {
        status_write(journal, witness_state_name(&plugin->witness));
    }
    return MOSQ_ERR_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Initialization and cleanup

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions) {
    for (int index = 0; index < supported_version_count; index++) {
        if (supported_versions[index] == 5) {
            return 5;
        }
    }
    return -1;
}

static void destroy(struct plugin *plugin) {
    compaction_free(&plugin->journal);
    preparation_free(&plugin->journal);
    witness_close(&plugin->witness);
    journal_close(&plugin->journal);
    options_free(&plugin->journal.options);
    free(plugin);
}

static int open_journal(struct plugin *plugin) {
    struct journal *journal = &plugin->journal;
    if (journal_open(journal) != 0) {
        journal_log(MOSQ_LOG_ERR, "cannot open the journal in %s: %s", journal->options.directory, strerror(errno));
        return -1;
    }
    if (unlinkat(journal->directory_fd, clean_stop_file, 0) == 0) {
        fsync_directory(journal->directory_fd);
    }
    if (witness_load_identity(&plugin->witness, journal->directory_fd) != 0) {
        journal_log(MOSQ_LOG_ERR, "cannot create the witness identity in %s: %s", journal->options.directory, strerror(errno));
        return -1;
    }
    return 0;
}

/// Compacts before the broker serves clients when the journal has grown past the limit, so that
/// a long-running broker that never compacted (for example one that stopped during compactions)
/// starts from a small journal. The broker waits for it; the log line gives the time.
static void compact_at_start(struct journal *journal) {
    if (!journal_needs_compaction(journal)) {
        return;
    }
    if (compaction_start(journal, database_mtime_ns(journal)) != 0 || compaction_poll(journal, true) != 1) {
        journal_log(MOSQ_LOG_WARNING, "the start-up compaction did not complete; the broker runs on the uncompacted journal");
    }
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count) {
    struct plugin *plugin = calloc(1, sizeof(*plugin));
    if (!plugin) {
        return MOSQ_ERR_NOMEM;
    }
    plugin->identifier = identifier;
    plugin->journal.directory_fd = -1;
    plugin->journal.active_fd = -1;
    plugin->witness.fd = -1;
    int rc = options_parse(&plugin->journal.options, options, option_count);
    if (rc != MOSQ_ERR_SUCCESS) {
        destroy(plugin);
        return rc;
    }
    if (open_journal(plugin) != 0 || replay_queue(&plugin->journal) != 0) {
        destroy(plugin);
        return MOSQ_ERR_UNKNOWN;
    }
    struct journal *journal = &plugin->journal;
    compact_at_start(journal);
    preparation_start(journal);
    mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, NULL, plugin);
    mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, plugin);
    mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, plugin);
    mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, plugin);
    if (journal->options.witness_password_authentication) {
        mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, plugin);
    }
    journal_log(MOSQ_LOG_NOTICE,
                "opened %s: %llu records read in %.1f ms (%zu topics, %zu deleted, %zu QoS 2 awaiting PUBREL, %llu bytes cut from a torn tail); "
                "%llu messages and %llu deletions queued for replay in %.1f ms",
                journal->options.directory, (unsigned long long)journal->stats.recovered_records, journal->stats.recovery_ms,
                journal->topics.count - journal->tombstones, journal->tombstones, journal->pending.count,
                (unsigned long long)journal->stats.truncated_bytes, (unsigned long long)journal->stats.replayed_messages,
                (unsigned long long)journal->stats.replayed_deletions, journal->stats.replay_queue_ms);
    status_write(journal, witness_state_name(&plugin->witness));
    *userdata = plugin;
    return MOSQ_ERR_SUCCESS;
}

/// Marks a stop after which mosquitto.db contains every retained message of the journal, because
/// the broker saved the database after the newest record. The supervisor then accepts autosave mode.
static void mark_clean_stop(struct journal *journal) {
    int64_t saved_at = database_mtime_ns(journal);
    if (saved_at == 0 || saved_at < journal->stats.last_sync_at_ns) {
        journal_log(MOSQ_LOG_NOTICE, "mosquitto.db is older than the newest journal record; the journal stays authoritative");
        return;
    }
    int fd = openat(journal->directory_fd, clean_stop_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char text[64];
        int length = snprintf(text, sizeof(text), "%llu\n", (unsigned long long)journal->next_seq);
        bool written = write(fd, text, (size_t)length) == length && fsync(fd) == 0;
        close(fd);
        if (written) {
            fsync_directory(journal->directory_fd);
        }
    }
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count) {
    (void)options;
    (void)option_count;
    struct plugin *plugin = userdata;
    if (!plugin) {
        return MOSQ_ERR_SUCCESS;
    }
    mosquitto_callback_unregister(plugin->identifier, MOSQ_EVT_MESSAGE, on_message, NULL);
    mosquitto_callback_unregister(plugin->identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
    mosquitto_callback_unregister(plugin->identifier, MOSQ_EVT_TICK, on_tick, NULL);
    mosquitto_callback_unregister(plugin->identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
    if (plugin->journal.options.witness_password_authentication) {
        mosquitto_callback_unregister(plugin->identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
    }
    finish_awaiting(plugin);
    compaction_free(&plugin->journal);
    preparation_free(&plugin->journal);
    mark_clean_stop(&plugin->journal);
    status_write(&plugin->journal, "stopped");
    destroy(plugin);
    return MOSQ_ERR_SUCCESS;
}
