#include "journal.h"

#include <string.h>
#include <time.h>

#include <mosquitto_broker.h>
#include <mqtt_protocol.h>

// Mosquitto 2.0.11 keeps a PUBLISH's Message Expiry Interval out of the properties it gives to
// the MOSQ_EVT_MESSAGE callback (handle_publish.c moves only the five forwarded message
// properties there). The raw packet is still in the client's `in_packet` while the callback runs,
// so this file reads the interval from it.
//
// NOTE: this reads the broker's private `struct mosquitto`, whose start in mosquitto 2.0
// (mosquitto_internal.h) is: [ident int, epoll builds] sock, maximum_packet_size, protocol,
// address, id, username, password, keepalive u16, last_mid u16, state, last_msg_in, next_msg_out,
// ping_t, in_packet {payload, next, remaining_mult u32, remaining_length u32, packet_length u32,
// to_process u32, pos u32, mid u16, command u8, remaining_count i8}. The layout is only trusted
// when the pointers address, id and username equal what the public accessors return, keepalive
// matches, the packet is a PUBLISH with the event's QoS, and its payload bytes equal the event's.
// Otherwise the result is EXPIRY_UNKNOWN and the caller rejects the publish.

struct packet_view {
    const uint8_t *data;
    uint32_t length;
    uint8_t command;
};

static bool locate_packet(const struct mosquitto *client, struct packet_view *view) {
    const unsigned char *base = (const unsigned char *)client;
    const char *address = mosquitto_client_address(client);
    const char *id = mosquitto_client_id(client);
    const char *username = mosquitto_client_username(client);
    if (!address || !id) {
        return false;
    }
    for (size_t offset = 0; offset <= 32; offset += sizeof(void *)) {
        const char *fields[3];
        memcpy(fields, base + offset, sizeof(fields));
        if (fields[0] != address || fields[1] != id || fields[2] != username) {
            continue;
        }
        size_t keepalive_offset = offset + 4 * sizeof(void *);
        uint16_t keepalive;
        memcpy(&keepalive, base + keepalive_offset, sizeof(keepalive));
        if (keepalive != (uint16_t)mosquitto_client_keepalive(client)) {
            return false;
        }
        size_t packet_offset = keepalive_offset + 2 * sizeof(uint16_t) + sizeof(int) + 3 * sizeof(time_t);
        memcpy(&view->data, base + packet_offset, sizeof(void *));
        memcpy(&view->length, base + packet_offset + 2 * sizeof(void *) + sizeof(uint32_t), sizeof(uint32_t));
        view->command = base[packet_offset + 2 * sizeof(void *) + 5 * sizeof(uint32_t) + sizeof(uint16_t)];
        return view->data != NULL;
    }
    return false;
}

static bool read_varint(const uint8_t *data, uint32_t length, uint32_t *cursor, uint32_t *value) {
    *value = 0;
    for (int shift = 0; shift <= 21; shift += 7) {
        if (*cursor >= length) {
            return false;
        }
        uint8_t byte = data[(*cursor)++];
        *value |= (uint32_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            return true;
        }
    }
    return false;
}

static bool skip_bytes(uint32_t length, uint32_t *cursor, uint32_t count) {
    if (count > length - *cursor) {
        return false;
    }
    *cursor += count;
    return true;
}

static bool skip_length_prefixed(const uint8_t *data, uint32_t length, uint32_t *cursor) {
    if (length - *cursor < 2) {
        return false;
    }
    uint32_t value_length = ((uint32_t)data[*cursor] << 8) | data[*cursor + 1];
    *cursor += 2;
    return skip_bytes(length, cursor, value_length);
}

enum expiry_result publish_expiry_interval(const struct mosquitto *client,
                                           const struct mosquitto_evt_message *event,
                                           uint32_t *interval) {
    if (mosquitto_client_protocol_version(client) != 5) {
        return EXPIRY_NONE;
    }
    struct packet_view packet;
    if (!locate_packet(client, &packet) || (packet.command & 0xF0) != 0x30
        || ((packet.command >> 1) & 0x03) != event->qos || packet.length < 2) {
        return EXPIRY_UNKNOWN;
    }
    const uint8_t *data = packet.data;
    uint32_t cursor = 0;
    if (!skip_length_prefixed(data, packet.length, &cursor) || (event->qos > 0 && !skip_bytes(packet.length, &cursor, 2))) {
        return EXPIRY_UNKNOWN;
    }
    uint32_t properties_length = 0;
    if (!read_varint(data, packet.length, &cursor, &properties_length) || properties_length > packet.length - cursor) {
        return EXPIRY_UNKNOWN;
    }
    uint32_t properties_end = cursor + properties_length;
    if (packet.length - properties_end != event->payloadlen
        || (event->payloadlen && memcmp(data + properties_end, event->payload, event->payloadlen) != 0)) {
        return EXPIRY_UNKNOWN;
    }
    enum expiry_result result = EXPIRY_NONE;
    while (cursor < properties_end) {
        uint8_t identifier = data[cursor++];
        bool ok;
        switch (identifier) {
        case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
            ok = skip_bytes(properties_end, &cursor, 1);
            break;
        case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
            ok = properties_end - cursor >= 4;
            if (ok) {
                *interval = ((uint32_t)data[cursor] << 24) | ((uint32_t)data[cursor + 1] << 16)
                    | ((uint32_t)data[cursor + 2] << 8) | data[cursor + 3];
                cursor += 4;
                result = EXPIRY_FOUND;
            }
            break;
        case MQTT_PROP_TOPIC_ALIAS:
            ok = skip_bytes(properties_end, &cursor, 2);
            break;
        case MQTT_PROP_CONTENT_TYPE:
        case MQTT_PROP_RESPONSE_TOPIC:
        case MQTT_PROP_CORRELATION_DATA:
            ok = skip_length_prefixed(data, properties_end, &cursor);
            break;
        case MQTT_PROP_USER_PROPERTY:
            ok = skip_length_prefixed(data, properties_end, &cursor) && skip_length_prefixed(data, properties_end, &cursor);
            break;
        case MQTT_PROP_SUBSCRIPTION_IDENTIFIER: {
            uint32_t ignored;
            ok = read_varint(data, properties_end, &cursor, &ignored);
            break;
        }
        default:
            ok = false;
            break;
        }
        if (!ok) {
            return EXPIRY_UNKNOWN;
        }
    }
    return result;
}
