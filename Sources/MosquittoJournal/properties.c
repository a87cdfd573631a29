#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mqtt_protocol.h>

// Values read with mosquitto_property_read_* come from the broker's allocator and go back to it
// with mosquitto_free.
//
// Each property is its identifier byte followed by its value, as in the MQTT v5 wire format. The
// payload format indicator takes one byte. Strings and binary data take a big-endian u16 length
// and their bytes, and a user property takes two of them.

struct byte_buffer {
    uint8_t *data;
    uint32_t length;
    uint32_t capacity;
};

static int buffer_append(struct byte_buffer *buffer, const void *data, uint32_t length) {
    if (buffer->length + length > buffer->capacity) {
        uint32_t capacity = buffer->capacity ? buffer->capacity * 2 : 256;
        while (capacity < buffer->length + length) {
            capacity *= 2;
        }
        uint8_t *grown = realloc(buffer->data, capacity);
        if (!grown) {
            return -1;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->length, data, length);
    buffer->length += length;
    return 0;
}

static int append_string(struct byte_buffer *buffer, const void *value, uint16_t length) {
    uint8_t prefix[2] = {(uint8_t)(length >> 8), (uint8_t)length};
    if (buffer_append(buffer, prefix, 2) != 0) {
        return -1;
    }
    return length ? buffer_append(buffer, value, length) : 0;
}

static int encode_one(struct byte_buffer *buffer, const mosquitto_property *property) {
    int identifier = mosquitto_property_identifier(property);
    uint8_t id_byte = (uint8_t)identifier;
    int rc = 0;
    switch (identifier) {
    case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: {
        uint8_t value = 0;
        mosquitto_property_read_byte(property, identifier, &value, false);
        rc = buffer_append(buffer, &id_byte, 1) || buffer_append(buffer, &value, 1);
        break;
    }
    case MQTT_PROP_CONTENT_TYPE:
    case MQTT_PROP_RESPONSE_TOPIC: {
        char *value = NULL;
        mosquitto_property_read_string(property, identifier, &value, false);
        size_t length = value ? strlen(value) : 0;
        rc = length > 65535 || buffer_append(buffer, &id_byte, 1)
            || append_string(buffer, value, (uint16_t)length);
        mosquitto_free(value);
        break;
    }
    case MQTT_PROP_CORRELATION_DATA: {
        void *value = NULL;
        uint16_t length = 0;
        mosquitto_property_read_binary(property, identifier, &value, &length, false);
        rc = buffer_append(buffer, &id_byte, 1) || append_string(buffer, value, length);
        mosquitto_free(value);
        break;
    }
    case MQTT_PROP_USER_PROPERTY: {
        char *name = NULL;
        char *value = NULL;
        mosquitto_property_read_string_pair(property, identifier, &name, &value, false);
        size_t name_length = name ? strlen(name) : 0;
        size_t value_length = value ? strlen(value) : 0;
        rc = name_length > 65535 || value_length > 65535 || buffer_append(buffer, &id_byte, 1)
            || append_string(buffer, name, (uint16_t)name_length)
            || append_string(buffer, value, (uint16_t)value_length);
        mosquitto_free(name);
        mosquitto_free(value);
        break;
    }
    default:
        // Only the five message properties above reach a plugin in Mosquitto 2.0; any other
        // one is not forwarded to subscribers either, so it is not kept.
        break;
    }
    return rc ? -1 : 0;
}

int properties_encode(const mosquitto_property *list, uint8_t **out, uint32_t *length) {
    struct byte_buffer buffer = {0};
    for (const mosquitto_property *property = list; property; property = mosquitto_property_next(property)) {
        if (encode_one(&buffer, property) != 0) {
            free(buffer.data);
            errno = ENOMEM;
            return -1;
        }
    }
    *out = buffer.data;
    *length = buffer.length;
    return 0;
}

/// Reads a length-prefixed value and returns it NUL-terminated in `out` (freed by the caller).
static int read_string(const uint8_t *data, uint32_t length, uint32_t *cursor, char **out, uint16_t *out_length) {
    if (*cursor + 2 > length) {
        return -1;
    }
    uint16_t value_length = (uint16_t)((data[*cursor] << 8) | data[*cursor + 1]);
    *cursor += 2;
    if (*cursor + value_length > length) {
        return -1;
    }
    *out = malloc((size_t)value_length + 1);
    if (!*out) {
        return -1;
    }
    memcpy(*out, data + *cursor, value_length);
    (*out)[value_length] = '\0';
    *cursor += value_length;
    if (out_length) {
        *out_length = value_length;
    }
    return 0;
}

int properties_decode(const uint8_t *data, uint32_t length, mosquitto_property **list) {
    *list = NULL;
    uint32_t cursor = 0;
    while (cursor < length) {
        int identifier = data[cursor++];
        int rc = MOSQ_ERR_SUCCESS;
        char *first = NULL;
        char *second = NULL;
        uint16_t first_length = 0;
        switch (identifier) {
        case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
            if (cursor + 1 > length) {
                rc = MOSQ_ERR_MALFORMED_PACKET;
                break;
            }
            rc = mosquitto_property_add_byte(list, identifier, data[cursor++]);
            break;
        case MQTT_PROP_CONTENT_TYPE:
        case MQTT_PROP_RESPONSE_TOPIC:
            rc = read_string(data, length, &cursor, &first, NULL) ? MOSQ_ERR_MALFORMED_PACKET
                : mosquitto_property_add_string(list, identifier, first);
            break;
        case MQTT_PROP_CORRELATION_DATA:
            rc = read_string(data, length, &cursor, &first, &first_length) ? MOSQ_ERR_MALFORMED_PACKET
                : mosquitto_property_add_binary(list, identifier, first, first_length);
            break;
        case MQTT_PROP_USER_PROPERTY:
            rc = read_string(data, length, &cursor, &first, NULL) || read_string(data, length, &cursor, &second, NULL)
                ? MOSQ_ERR_MALFORMED_PACKET : mosquitto_property_add_string_pair(list, identifier, first, second);
            break;
        default:
            rc = MOSQ_ERR_MALFORMED_PACKET;
            break;
        }
        free(first);
        free(second);
        if (rc != MOSQ_ERR_SUCCESS) {
            mosquitto_property_free_all(list);
            errno = EINVAL;
            return -1;
        }
    }
    return 0;
}
