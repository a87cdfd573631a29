#ifndef MOSQUITTO_JOURNAL_H
#define MOSQUITTO_JOURNAL_H

// A Mosquitto 2.0 broker plugin (plugin API version 5) that keeps a journal of retained
// messages and makes each record durable before the broker acknowledges the publish.
// The plugin exports only these three functions, which the broker calls.

struct mosquitto_opt;
typedef struct mosquitto_plugin_id_t mosquitto_plugin_id_t;

#define MOSQUITTO_JOURNAL_EXPORT __attribute__((visibility("default")))

MOSQUITTO_JOURNAL_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions);
MOSQUITTO_JOURNAL_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count);
MOSQUITTO_JOURNAL_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count);

#endif
