#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mosquitto_broker.h>

// The witness is an MQTT v5 session with a session expiry interval of "never", subscribed to "#"
// with QoS 0 and retain handling 2 (no retained messages at subscribe time). Its client id is
// random and kept in the journal directory, so every start reuses one session. The plugin
// connects it to the broker's own listener from the tick callback at start and every 10 minutes,
// and disconnects at once: the session stays, offline. For every message the broker applies, it
// checks whether the witness may read it, which calls the plugin's ACL callback. The callback
// returns "denied", so nothing is ever queued for the witness. That check is how the plugin
// sees a QoS 2 message applied at PUBREL, and retained will messages.

static const char identity_file[] = "witness-id";
#define WITNESS_REFRESH_NS (600LL * 1000000000LL)
static const char witness_username[] = "journal-witness";

static void random_hex(char *out, size_t bytes) {
    unsigned char raw[32];
    if (bytes > sizeof(raw) || getrandom(raw, bytes, 0) != (ssize_t)bytes) {
        // getrandom does not fail for 32 bytes once the pool is initialized; this keeps ids distinct anyway.
        for (size_t index = 0; index < bytes; index++) {
            raw[index] = (unsigned char)(rand() ^ (int)monotonic_ns());
        }
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t index = 0; index < bytes; index++) {
        out[2 * index] = digits[raw[index] >> 4];
        out[2 * index + 1] = digits[raw[index] & 0x0F];
    }
    out[2 * bytes] = '\0';
}

int witness_load_identity(struct witness *witness, int directory_fd) {
    memset(witness, 0, sizeof(*witness));
    witness->fd = -1;
    random_hex(witness->password, 16);
    int fd = openat(directory_fd, identity_file, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, witness->client_id, sizeof(witness->client_id) - 1);
        close(fd);
        if (got > 16) {
            witness->client_id[got] = '\0';
            witness->client_id[strcspn(witness->client_id, "\n")] = '\0';
            return 0;
        }
    }
    char hex[33];
    random_hex(hex, 16);
    snprintf(witness->client_id, sizeof(witness->client_id), "journal-witness-%s", hex);
    fd = openat(directory_fd, "witness-id.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    size_t length = strlen(witness->client_id);
    bool written = write(fd, witness->client_id, length) == (ssize_t)length && fsync(fd) == 0;
    close(fd);
    if (!written || renameat(directory_fd, "witness-id.tmp", directory_fd, identity_file) != 0) {
        return -1;
    }
    return fsync_directory(directory_fd);
}

bool witness_is(struct witness *witness, const struct mosquitto *client) {
    const char *id = mosquitto_client_id(client);
    return id && strcmp(id, witness->client_id) == 0;
}

const char *witness_state_name(const struct witness *witness) {
    if (witness->subscribed) {
        return "subscribed";
    }
    switch (witness->state) {
    case WITNESS_IDLE: return "waiting";
    case WITNESS_CONNECTING:
    case WITNESS_SENT: return "connecting";
    case WITNESS_READY: return "subscribed";
    case WITNESS_FAILED: return "failed";
    }
    return "unknown";
}

static size_t put_varint(uint8_t *out, uint32_t value) {
    size_t count = 0;
    do {
        uint8_t byte = value % 128;
        value /= 128;
        out[count++] = (uint8_t)(value ? byte | 0x80 : byte);
    } while (value);
    return count;
}

static size_t put_string(uint8_t *out, const char *value) {
    size_t length = strlen(value);
    out[0] = (uint8_t)(length >> 8);
    out[1] = (uint8_t)length;
    memcpy(out + 2, value, length);
    return length + 2;
}

/// CONNECT (v5, clean start 0, session expiry "never"), SUBSCRIBE "#" and DISCONNECT in one buffer.
static size_t build_packets(const struct witness *witness, bool authenticate, uint8_t *out) {
    uint8_t body[256];
    size_t length = 0;
    length += put_string(body + length, "MQTT");
    body[length++] = 5;
    body[length++] = authenticate ? 0xC0 : 0x00;
    body[length++] = 0;
    body[length++] = 0;
    body[length++] = 5;
    body[length++] = 0x11;
    memset(body + length, 0xFF, 4);
    length += 4;
    length += put_string(body + length, witness->client_id);
    if (authenticate) {
        length += put_string(body + length, witness_username);
        length += put_string(body + length, witness->password);
    }
    size_t total = 0;
    out[total++] = 0x10;
    total += put_varint(out + total, (uint32_t)length);
    memcpy(out + total, body, length);
    total += length;

    static const uint8_t subscribe[] = {0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, '#', 0x20};
    memcpy(out + total, subscribe, sizeof(subscribe));
    total += sizeof(subscribe);
    out[total++] = 0xE0;
    out[total++] = 0x00;
    return total;
}

static void schedule_retry(struct witness *witness, const char *reason) {
    if (witness->fd >= 0) {
        close(witness->fd);
        witness->fd = -1;
    }
    unsigned delay = witness->attempts < 6 ? 1u << witness->attempts : 60u;
    witness->attempts++;
    witness->next_attempt_ns = monotonic_ns() + (int64_t)delay * 1000000000LL;
    witness->state = WITNESS_FAILED;
    journal_log(MOSQ_LOG_WARNING, "the journal witness could not subscribe (%s); retrying in %u s. "
                "Until it does, QoS 2 retained publishes are rejected", reason, delay);
}

static void start_connection(struct witness *witness, const struct journal_options *options) {
    char port[8];
    snprintf(port, sizeof(port), "%d", options->witness_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses = NULL;
    int rc = getaddrinfo(options->witness_host, port, &hints, &addresses);
    if (rc != 0 || !addresses) {
        schedule_retry(witness, gai_strerror(rc));
        return;
    }
    witness->fd = socket(addresses->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (witness->fd < 0 || (connect(witness->fd, addresses->ai_addr, addresses->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        freeaddrinfo(addresses);
        schedule_retry(witness, strerror(errno));
        return;
    }
    freeaddrinfo(addresses);
    witness->state = WITNESS_CONNECTING;
    witness->deadline_ns = monotonic_ns() + 10000000000LL;
}

static void send_packets(struct witness *witness, const struct journal_options *options) {
    int error = 0;
    socklen_t error_length = sizeof(error);
    getsockopt(witness->fd, SOL_SOCKET, SO_ERROR, &error, &error_length);
    if (error != 0) {
        schedule_retry(witness, strerror(error));
        return;
    }
    uint8_t packets[512];
    size_t length = build_packets(witness, options->witness_password_authentication, packets);
    if (send(witness->fd, packets, length, MSG_NOSIGNAL) != (ssize_t)length) {
        schedule_retry(witness, "cannot send its CONNECT");
        return;
    }
    witness->state = WITNESS_SENT;
}

/// Reads CONNACK and SUBACK until the broker closes the connection after DISCONNECT.
static void read_answers(struct witness *witness) {
    uint8_t answer[256];
    ssize_t got;
    while ((got = recv(witness->fd, answer, sizeof(answer), 0)) > 0) {
        if (answer[0] == 0x20 && got >= 4 && answer[3] != 0x00) {
            char reason[64];
            snprintf(reason, sizeof(reason), "CONNACK reason code 0x%02x", answer[3]);
            schedule_retry(witness, reason);
            return;
        }
    }
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    close(witness->fd);
    witness->fd = -1;
    if (witness->subscribed) {
        if (witness->state != WITNESS_READY && witness->attempts > 0) {
            journal_log(MOSQ_LOG_INFO, "the journal witness session is subscribed after %u failed attempts", witness->attempts);
        } else if (!witness->refreshed) {
            journal_log(MOSQ_LOG_INFO, "the journal witness session is subscribed");
        }
        witness->state = WITNESS_READY;
        witness->refreshed = true;
        witness->attempts = 0;
        witness->next_attempt_ns = monotonic_ns() + WITNESS_REFRESH_NS;
    } else {
        schedule_retry(witness, "the broker closed the connection before the subscription");
    }
}

void witness_tick(struct witness *witness, const struct journal_options *options) {
    if (!options->witness_host) {
        return;
    }
    int64_t now = monotonic_ns();
    if (witness->state == WITNESS_READY) {
        // Subscribing again repairs a session that expired (persistent_client_expiration) or that a
        // client with the same id replaced; the plugin cannot see either happen.
        if (now >= witness->next_attempt_ns) {
            witness->state = WITNESS_IDLE;
        }
        return;
    }
    if (witness->state == WITNESS_IDLE || witness->state == WITNESS_FAILED) {
        if (now >= witness->next_attempt_ns) {
            start_connection(witness, options);
        }
        return;
    }
    if (now > witness->deadline_ns) {
        schedule_retry(witness, "timed out");
        return;
    }
    struct pollfd poll_fd = {.fd = witness->fd, .events = witness->state == WITNESS_CONNECTING ? POLLOUT : POLLIN};
    if (poll(&poll_fd, 1, 0) <= 0) {
        return;
    }
    if (witness->state == WITNESS_CONNECTING) {
        send_packets(witness, options);
    } else {
        read_answers(witness);
    }
}

void witness_close(struct witness *witness) {
    if (witness->fd >= 0) {
        close(witness->fd);
        witness->fd = -1;
    }
}
