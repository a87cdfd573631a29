#include "journal.h"

#include <string.h>

// Record layout, all integers little-endian:
//   header (32 bytes): crc32c u32 | magic u32 | body length u32 | type u8 | qos u8 | flags u16
//                      | seq u64 | written_at_ns i64
//   body:              expiry_at i64 | undo_seq u64 | topic_len u16 | client_len u16
//                      | properties_len u32 | payload_len u32 | topic | client | properties | payload
// The checksum covers everything after itself, so a torn or zeroed tail never decodes.

#define BODY_FIXED_SIZE 28u

static uint32_t crc32c_table[256];
static bool crc32c_ready;

static void crc32c_build_table(void) {
    for (uint32_t index = 0; index < 256; index++) {
        uint32_t value = index;
        for (int bit = 0; bit < 8; bit++) {
            value = (value & 1) ? (value >> 1) ^ 0x82F63B78u : value >> 1;
        }
        crc32c_table[index] = value;
    }
    crc32c_ready = true;
}

uint32_t crc32c(uint32_t crc, const void *data, size_t length) {
    if (!crc32c_ready) {
        crc32c_build_table();
    }
    const uint8_t *bytes = data;
    crc = ~crc;
    for (size_t index = 0; index < length; index++) {
        crc = crc32c_table[(crc ^ bytes[index]) & 0xFF] ^ (crc >> 8);
    }
    return ~crc;
}

static void put16(uint8_t *out, uint16_t value) {
    out[0] = (uint8_t)value;
    out[1] = (uint8_t)(value >> 8);
}

static void put32(uint8_t *out, uint32_t value) {
    for (int index = 0; index < 4; index++) {
        out[index] = (uint8_t)(value >> (8 * index));
    }
}

static void put64(uint8_t *out, uint64_t value) {
    for (int index = 0; index < 8; index++) {
        out[index] = (uint8_t)(value >> (8 * index));
    }
}

static uint16_t get16(const uint8_t *in) {
    return (uint16_t)(in[0] | (in[1] << 8));
}

static uint32_t get32(const uint8_t *in) {
    uint32_t value = 0;
    for (int index = 3; index >= 0; index--) {
        value = (value << 8) | in[index];
    }
    return value;
}

static uint64_t get64(const uint8_t *in) {
    uint64_t value = 0;
    for (int index = 7; index >= 0; index--) {
        value = (value << 8) | in[index];
    }
    return value;
}

size_t record_size(const struct journal_record *record) {
    return RECORD_HEADER_SIZE + BODY_FIXED_SIZE + record->topic_len + record->client_len
        + record->properties_len + record->payload_len;
}

void record_encode(const struct journal_record *record, uint8_t *out) {
    uint32_t body_length = (uint32_t)(record_size(record) - RECORD_HEADER_SIZE);
    put32(out + 4, RECORD_MAGIC);
    put32(out + 8, body_length);
    out[12] = record->type;
    out[13] = record->qos;
    put16(out + 14, record->flags);
    put64(out + 16, record->seq);
    put64(out + 24, (uint64_t)record->written_at_ns);

    uint8_t *body = out + RECORD_HEADER_SIZE;
    put64(body, (uint64_t)record->expiry_at);
    put64(body + 8, record->undo_seq);
    put16(body + 16, record->topic_len);
    put16(body + 18, record->client_len);
    put32(body + 20, record->properties_len);
    put32(body + 24, record->payload_len);
    uint8_t *cursor = body + BODY_FIXED_SIZE;
    if (record->topic_len) {
        memcpy(cursor, record->topic, record->topic_len);
        cursor += record->topic_len;
    }
    if (record->client_len) {
        memcpy(cursor, record->client, record->client_len);
        cursor += record->client_len;
    }
    if (record->properties_len) {
        memcpy(cursor, record->properties, record->properties_len);
        cursor += record->properties_len;
    }
    if (record->payload_len) {
        memcpy(cursor, record->payload, record->payload_len);
    }
    put32(out, crc32c(0, out + 4, RECORD_HEADER_SIZE - 4 + body_length));
}

enum decode_result record_decode(const uint8_t *buffer, size_t available,
                                 struct journal_record *record, uint32_t *size) {
    if (available < RECORD_HEADER_SIZE) {
        return DECODE_SHORT;
    }
    if (get32(buffer + 4) != RECORD_MAGIC) {
        return DECODE_INVALID;
    }
    uint32_t body_length = get32(buffer + 8);
    if (body_length < BODY_FIXED_SIZE || body_length > RECORD_MAX_BODY) {
        return DECODE_INVALID;
    }
    if (available < RECORD_HEADER_SIZE + (size_t)body_length) {
        return DECODE_SHORT;
    }
    if (crc32c(0, buffer + 4, RECORD_HEADER_SIZE - 4 + body_length) != get32(buffer)) {
        return DECODE_INVALID;
    }
    const uint8_t *body = buffer + RECORD_HEADER_SIZE;
    memset(record, 0, sizeof(*record));
    record->type = buffer[12];
    record->qos = buffer[13];
    record->flags = get16(buffer + 14);
    record->seq = get64(buffer + 16);
    record->written_at_ns = (int64_t)get64(buffer + 24);
    record->expiry_at = (int64_t)get64(body);
    record->undo_seq = get64(body + 8);
    record->topic_len = get16(body + 16);
    record->client_len = get16(body + 18);
    record->properties_len = get32(body + 20);
    record->payload_len = get32(body + 24);
    uint64_t variable = (uint64_t)record->topic_len + record->client_len + record->properties_len
        + record->payload_len;
    if (variable != body_length - BODY_FIXED_SIZE || record->type < RECORD_SET || record->type > RECORD_UNDO
        || record->qos > 2) {
        return DECODE_INVALID;
    }
    const uint8_t *cursor = body + BODY_FIXED_SIZE;
    record->topic = (const char *)cursor;
    cursor += record->topic_len;
    record->client = (const char *)cursor;
    cursor += record->client_len;
    record->properties = cursor;
    cursor += record->properties_len;
    record->payload = cursor;
    *size = RECORD_HEADER_SIZE + body_length;
    return DECODE_OK;
}
