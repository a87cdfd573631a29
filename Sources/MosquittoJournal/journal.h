#ifndef MOSQUITTO_JOURNAL_INTERNAL_H
#define MOSQUITTO_JOURNAL_INTERNAL_H

// Internal declarations of the journal plugin. docs/durability.md ("Journal mode") describes
// the file format, the recovery rules and the guarantees.

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>

// Only the three plugin entry points are exported (see mosquitto_journal.h). The broker binary
// exports all of its own functions, and an exported helper of the same name would bind to the
// broker's instead of this plugin's.
#pragma GCC visibility push(hidden)

// ---------------------------------------------------------------------------------------------
// Records

/// gocryptfs encrypts the plaintext in blocks of this size. Records in the active segment start
/// on a block boundary and are padded to one, so an append never rewrites a block that holds an
/// earlier, already acknowledged record (a torn block write would make the whole block unreadable).
#define JOURNAL_BLOCK_SIZE 4096u
#define RECORD_HEADER_SIZE 32u
/// "JRNL" read as a little-endian 32-bit number.
#define RECORD_MAGIC 0x4C4E524Au
/// MQTT limits a payload to 268 435 455 bytes; topic, client id and properties add at most a few MB.
#define RECORD_MAX_BODY (300u * 1024u * 1024u)

enum record_type {
    /// A retained message is stored (QoS 0 or 1 publish, or a QoS 2 publish after its PUBREL).
    RECORD_SET = 1,
    /// The retained message of a topic is removed (a retained publish with an empty payload).
    RECORD_DELETE = 2,
    /// A QoS 2 retained publish acknowledged with PUBREC whose PUBREL has not been seen yet.
    RECORD_PENDING = 3,
    /// The broker rejected the publish of record `undo_seq` after the callback returned (quota).
    RECORD_UNDO = 4,
};

/// The record was written from what the broker's delivery showed (a will message, or a QoS 2
/// release without its pending record), so MQTT v5 properties and expiry are unknown.
#define RECORD_FLAG_OBSERVED 0x0001u

/// One decoded record. The pointers point into the buffer that was decoded.
struct journal_record {
    uint8_t type;
    uint8_t qos;
    uint16_t flags;
    uint64_t seq;
    int64_t written_at_ns;
    /// Unix seconds after which the message is expired; 0 when it never expires.
    int64_t expiry_at;
    /// For RECORD_UNDO: the sequence number of the record that is undone.
    uint64_t undo_seq;
    const char *topic;
    uint16_t topic_len;
    /// The publishing client, kept in RECORD_PENDING only.
    const char *client;
    uint16_t client_len;
    const uint8_t *properties;
    uint32_t properties_len;
    const uint8_t *payload;
    uint32_t payload_len;
};

enum decode_result { DECODE_OK = 0, DECODE_SHORT = 1, DECODE_INVALID = 2 };

uint32_t crc32c(uint32_t crc, const void *data, size_t length);
size_t record_size(const struct journal_record *record);
void record_encode(const struct journal_record *record, uint8_t *out);
enum decode_result record_decode(const uint8_t *buffer, size_t available,
                                 struct journal_record *record, uint32_t *size);

/// Encodes the message properties that a PUBLISH carries to subscribers (payload format,
/// content type, response topic, correlation data, user properties) in the journal's own form.
int properties_encode(const mosquitto_property *list, uint8_t **out, uint32_t *length);
int properties_decode(const uint8_t *data, uint32_t length, mosquitto_property **list);

// ---------------------------------------------------------------------------------------------
// Segments

#define SEGMENT_HEADER_SIZE JOURNAL_BLOCK_SIZE
#define SEGMENT_FLAG_DENSE 0x1u

struct segment_info {
    uint64_t number;
    bool dense;
    uint64_t size;
};

void segment_name(uint64_t number, char *name, size_t size);
int segment_list(int directory_fd, struct segment_info **segments, size_t *count);
int segment_create(int directory_fd, const char *name, uint64_t number, bool dense, int *fd_out);
int segment_read_header(int fd, uint64_t *number, bool *dense);
int fsync_directory(int directory_fd);

/// Reads the records of one segment in order with a large buffer.
struct segment_reader {
    int fd;
    bool dense;
    uint8_t *buffer;
    size_t capacity;
    size_t start;
    size_t end;
    uint64_t buffer_offset;
    uint64_t next_offset;
    bool end_of_file;
};

int reader_open(struct segment_reader *reader, int fd, bool dense);
/// Returns 1 with the next record; 0 at a clean end, which is the end of the file or, in a
/// segment written with block-aligned records, a block of zeros; -1 at a torn or invalid record;
/// -2 when a read fails (errno set). At the ends `offset` is where the records stop.
int reader_next(struct segment_reader *reader, struct journal_record *record,
                uint64_t *offset, uint32_t *size);
void reader_close(struct segment_reader *reader);

// ---------------------------------------------------------------------------------------------
// Hash map keyed by byte strings (topics, client ids). The key is hashed with SipHash-2-4 under
// a random key, because topics come from clients.

struct location {
    uint64_t segment;
    uint64_t offset;
    uint32_t length;
};

struct entry {
    struct entry *next;
    uint64_t hash;
    char *key;
    size_t key_len;
    uint8_t type;
    uint8_t qos;
    uint64_t seq;
    int64_t written_at_ns;
    int64_t expiry_at;
    /// Location of the record, valid during recovery and replay only. Compaction moves records
    /// without telling the index, which afterwards needs only `where.length`.
    struct location where;
    /// A copy of the encoded record: kept for pending QoS 2 records, and during recovery until
    /// the replay has used it.
    uint8_t *record;
    /// The topic's record before this one, for RECORD_UNDO. Its location is read during recovery
    /// only, because compaction moves records without telling the index.
    bool has_previous;
    struct location previous;
    uint64_t previous_seq;
    uint8_t previous_type;
    uint8_t previous_qos;
    int64_t previous_expiry_at;
    int64_t previous_written_at_ns;
    /// The client id of a pending record; a count in the map of clients with pending records.
    char *client;
    uint64_t count;
};

struct entry_map {
    struct entry **buckets;
    size_t bucket_count;
    size_t count;
    uint64_t hash_key[2];
};

int map_init(struct entry_map *map);
void map_free(struct entry_map *map);
struct entry *map_find(const struct entry_map *map, const char *key, size_t key_len);
/// Returns the entry for `key`, creating an empty one when there is none (NULL when out of memory).
struct entry *map_upsert(struct entry_map *map, const char *key, size_t key_len, bool *created);
void map_remove(struct entry_map *map, struct entry *entry);
void entry_free(struct entry *entry);
/// Calls `visit` for every entry; the entry may not be removed inside `visit`.
void map_each(const struct entry_map *map, void (*visit)(struct entry *, void *), void *context);
uint64_t siphash24(const uint64_t key[2], const void *data, size_t length);

// ---------------------------------------------------------------------------------------------
// The journal

/// Steps of a compaction, in order, at which a test can make the broker crash.
enum crash_point {
    CRASH_POINT_NONE,
    /// The temporary output contains part of the live records.
    CRASH_POINT_COMPACTION_PARTIAL,
    /// The output is written and synced under its temporary name.
    CRASH_POINT_COMPACTION_WRITTEN,
    /// The output has replaced the newest sealed segment; the older ones still exist.
    CRASH_POINT_COMPACTION_RENAMED,
};

struct journal_options {
    char *directory;
    char *status_file;
    char *database_file;
    char *witness_host;
    int witness_port;
    bool witness_password_authentication;
    /// True when the ACL callback allows ordinary clients itself, because no ACL file and no other
    /// plugin decides.
    bool acl_allow_by_default;
    uint64_t segment_bytes;
    uint64_t compact_min_bytes;
    uint32_t pending_limit;
    /// For tests only: the compaction step at which the plugin kills its own broker with
    /// SIGKILL (plugin_opt_test_crash_point), so that a test can restart from that exact state.
    enum crash_point test_crash_point;
};

struct journal_stats {
    uint64_t records_written;
    uint64_t syncs;
    uint64_t failed_writes;
    int64_t last_failure_at_ns;
    uint64_t rejected_publishes;
    uint64_t undo_records;
    uint64_t observed_records;
    int64_t last_sync_at_ns;
    uint64_t recovered_records;
    uint64_t truncated_bytes;
    uint64_t replayed_messages;
    uint64_t replayed_deletions;
    double recovery_ms;
    double replay_queue_ms;
    uint64_t compactions;
    double last_compaction_ms;
    double max_compaction_pause_ms;
    double last_compaction_pause_ms;
};

struct compaction;
struct preparation;

/// The QoS 0 or 1 retained publish whose MOSQ_EVT_MESSAGE callback just returned. The broker
/// shows it to the witness before it handles anything else, unless it dropped it.
struct awaiting_publish {
    bool active;
    /// The broker's own topic and payload pointers, which its delivery to the witness repeats.
    const char *topic;
    const void *payload;
    uint32_t payload_len;
    uint64_t seq;
    /// A copy of the topic, kept when the publisher has QoS 2 publishes waiting for PUBREL: only
    /// then can the broker's receive quota drop a publish after the callback accepted it, which
    /// calls for an undo record.
    char *undo_topic;
};

struct journal {
    struct journal_options options;
    int directory_fd;
    int active_fd;
    uint64_t active_number;
    uint64_t active_size;
    bool active_needs_truncate;
    bool roll_before_next_append;
    uint64_t next_seq;
    /// Bytes in use by segment headers, records and their padding; a prepared segment's zeros
    /// after its last record are not counted.
    uint64_t total_bytes;
    uint64_t live_bytes;
    size_t segment_count;
    /// Guards the maps: the broker's thread changes them, and the compaction thread reads them.
    pthread_mutex_t index_lock;
    struct entry_map topics;
    struct entry_map pending;
    struct entry_map pending_clients;
    size_t tombstones;
    uint8_t *scratch;
    size_t scratch_capacity;
    struct journal_stats stats;
    struct awaiting_publish awaiting;
    struct compaction *compaction;
    int64_t next_compaction_attempt_ns;
    struct preparation *preparation;
    int64_t next_preparation_attempt_ns;
    int64_t last_status_ns;
};

int64_t wall_clock_ns(void);
int64_t monotonic_ns(void);

struct mosquitto_opt;
/// Reads the plugin options into `options`; returns a MOSQ_ERR code and logs what is invalid.
int options_parse(struct journal_options *options, struct mosquitto_opt *list, int count);
void options_free(struct journal_options *options);
/// Kills the broker with SIGKILL when `point` is the configured crash point.
void crash_point_reached(const struct journal_options *options, enum crash_point point);

int journal_open(struct journal *journal);
void journal_close(struct journal *journal);
/// Appends one record and makes it durable (write, then fdatasync). On failure nothing of the
/// record stays in the file, and errno is set.
int journal_append(struct journal *journal, struct journal_record *record, struct location *where);
/// Seals the active segment and starts the next one (number + 1).
int journal_roll(struct journal *journal);
int journal_read_record(struct journal *journal, const struct location *where, uint8_t **copy);
void journal_apply(struct journal *journal, const struct journal_record *record,
                   const struct location *where, const uint8_t *copy);
bool journal_is_expired(int64_t expiry_at, int64_t now_s);
struct entry *journal_find_pending(struct journal *journal, const char *topic, uint16_t topic_len,
                                   const void *payload, uint32_t payload_len);
void journal_drop_pending(struct journal *journal, struct entry *pending);
bool journal_client_has_pending(const struct journal *journal, const char *client);
bool journal_needs_compaction(const struct journal *journal);

int recovery_run(struct journal *journal);

int compaction_start(struct journal *journal, int64_t database_mtime_ns);
/// Takes the result of a finished compaction (or waits for it): counters, log line, and the
/// deleted topics whose record compaction dropped. Returns 1 when the compacted segment replaced
/// its inputs.
int compaction_poll(struct journal *journal, bool wait);
void compaction_free(struct journal *journal);
int64_t database_mtime_ns(const struct journal *journal);

/// Starts writing the next segment (active + 1) full of zeros on its own thread.
void preparation_start(struct journal *journal);
/// Renames the prepared segment `number` to `name` and opens it; -1 when none is ready.
int preparation_take(struct journal *journal, uint64_t number, const char *name, int *fd_out);
/// Cleans up a finished preparation that is no longer usable and starts the next one.
void preparation_poll(struct journal *journal);
void preparation_free(struct journal *journal);

int replay_queue(struct journal *journal);
bool replay_window_denies(const struct journal *journal, const char *topic);
void replay_window_close(struct journal *journal);

void status_write(struct journal *journal, const char *witness_state);

// ---------------------------------------------------------------------------------------------
// Reading the message expiry interval that the broker does not pass to plugins.

struct mosquitto;
struct mosquitto_evt_message;
enum expiry_result { EXPIRY_NONE = 0, EXPIRY_FOUND = 1, EXPIRY_UNKNOWN = 2 };
enum expiry_result publish_expiry_interval(const struct mosquitto *client,
                                           const struct mosquitto_evt_message *event,
                                           uint32_t *interval);

// ---------------------------------------------------------------------------------------------
// The witness: an offline persistent session subscribed to "#" whose ACL read checks show the
// plugin every retained change the broker applies.

enum witness_state { WITNESS_IDLE, WITNESS_CONNECTING, WITNESS_SENT, WITNESS_READY, WITNESS_FAILED };

struct witness {
    char client_id[64];
    char password[33];
    enum witness_state state;
    int fd;
    int64_t deadline_ns;
    int64_t next_attempt_ns;
    unsigned attempts;
    bool subscribed;
    /// True after the first successful subscription; later ones refresh it every 10 minutes.
    bool refreshed;
};

int witness_load_identity(struct witness *witness, int directory_fd);
bool witness_is(struct witness *witness, const struct mosquitto *client);
void witness_tick(struct witness *witness, const struct journal_options *options);
void witness_close(struct witness *witness);
const char *witness_state_name(const struct witness *witness);

void journal_log(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#pragma GCC visibility pop

#endif
