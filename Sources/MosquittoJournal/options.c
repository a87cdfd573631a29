#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

// The plugin's options, from the `plugin_opt_NAME VALUE` lines that follow its `plugin` line.

static bool parse_size(const char *value, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(value, &end, 10);
    if (errno != 0 || !end || *end != '\0' || parsed == 0) {
        return false;
    }
    *out = parsed;
    return true;
}

static bool parse_address(const char *value, struct journal_options *options) {
    const char *colon = strrchr(value, ':');
    if (!colon || colon == value) {
        return false;
    }
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!end || *end != '\0' || port <= 0 || port > 65535) {
        return false;
    }
    const char *host = value;
    size_t host_len = (size_t)(colon - value);
    if (host[0] == '[' && host_len > 2 && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    options->witness_host = strndup(host, host_len);
    options->witness_port = (int)port;
    return options->witness_host != NULL;
}

static bool parse_crash_point(const char *value, enum crash_point *point) {
    static const struct {
        const char *name;
        enum crash_point point;
    } names[] = {
        {"compaction-partial", CRASH_POINT_COMPACTION_PARTIAL},
        {"compaction-written", CRASH_POINT_COMPACTION_WRITTEN},
        {"compaction-renamed", CRASH_POINT_COMPACTION_RENAMED},
    };
    for (size_t index = 0; index < sizeof(names) / sizeof(names[0]); index++) {
        if (strcmp(value, names[index].name) == 0) {
            *point = names[index].point;
            return true;
        }
    }
    return false;
}

void crash_point_reached(const struct journal_options *options, enum crash_point point) {
    if (options->test_crash_point == point) {
        // Written directly, because this runs on the compaction thread, not the broker's.
        static const char message[] = "journal: plugin_opt_test_crash_point reached; killing the broker with SIGKILL\n";
        ssize_t ignored = write(STDERR_FILENO, message, sizeof(message) - 1);
        (void)ignored;
        kill(getpid(), SIGKILL);
    }
}

int options_parse(struct journal_options *options, struct mosquitto_opt *list, int count) {
    // A prepared segment is written in full, so the journal occupies at least two of them.
    options->segment_bytes = 16u << 20;
    options->compact_min_bytes = 128u << 20;
    options->pending_limit = 10000;
    for (int index = 0; index < count; index++) {
        const char *key = list[index].key;
        const char *value = list[index].value ? list[index].value : "";
        bool ok = true;
        uint64_t number = 0;
        if (strcmp(key, "journal_dir") == 0) {
            options->directory = strdup(value);
        } else if (strcmp(key, "status_file") == 0) {
            options->status_file = strdup(value);
        } else if (strcmp(key, "database_file") == 0) {
            options->database_file = strdup(value);
        } else if (strcmp(key, "witness_address") == 0) {
            ok = parse_address(value, options);
        } else if (strcmp(key, "witness_password_auth") == 0) {
            ok = strcmp(value, "true") == 0 || strcmp(value, "false") == 0;
            options->witness_password_authentication = strcmp(value, "true") == 0;
        } else if (strcmp(key, "acl_default") == 0) {
            ok = strcmp(value, "allow") == 0 || strcmp(value, "defer") == 0;
            options->acl_allow_by_default = strcmp(value, "allow") == 0;
        } else if (strcmp(key, "segment_bytes") == 0) {
            ok = parse_size(value, &number) && number >= 2 * JOURNAL_BLOCK_SIZE;
            options->segment_bytes = number;
        } else if (strcmp(key, "compact_min_bytes") == 0) {
            ok = parse_size(value, &number);
            options->compact_min_bytes = number;
        } else if (strcmp(key, "pending_limit") == 0) {
            ok = parse_size(value, &number) && number <= 1000000;
            options->pending_limit = (uint32_t)number;
        } else if (strcmp(key, "test_crash_point") == 0) {
            ok = parse_crash_point(value, &options->test_crash_point);
        } else {
            journal_log(MOSQ_LOG_ERR, "unknown option plugin_opt_%s; the options are journal_dir, status_file, database_file, "
                        "witness_address, witness_password_auth, acl_default, segment_bytes, compact_min_bytes, pending_limit, "
                        "test_crash_point", key);
            return MOSQ_ERR_INVAL;
        }
        if (!ok) {
            journal_log(MOSQ_LOG_ERR, "invalid value \"%s\" for plugin_opt_%s", value, key);
            return MOSQ_ERR_INVAL;
        }
    }
    if (!options->directory || options->directory[0] != '/') {
        journal_log(MOSQ_LOG_ERR, "plugin_opt_journal_dir must be an absolute directory path on the encrypted store");
        return MOSQ_ERR_INVAL;
    }
    return MOSQ_ERR_SUCCESS;
}

void options_free(struct journal_options *options) {
    free(options->directory);
    free(options->status_file);
    free(options->database_file);
    free(options->witness_host);
    memset(options, 0, sizeof(*options));
}
