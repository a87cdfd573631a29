#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ROTATE(value, bits) (((value) << (bits)) | ((value) >> (64 - (bits))))

#define SIP_ROUND(v0, v1, v2, v3) \
    do { \
        v0 += v1; v1 = ROTATE(v1, 13); v1 ^= v0; v0 = ROTATE(v0, 32); \
        v2 += v3; v3 = ROTATE(v3, 16); v3 ^= v2; \
        v0 += v3; v3 = ROTATE(v3, 21); v3 ^= v0; \
        v2 += v1; v1 = ROTATE(v1, 17); v1 ^= v2; v2 = ROTATE(v2, 32); \
    } while (0)

uint64_t siphash24(const uint64_t key[2], const void *data, size_t length) {
    const uint8_t *bytes = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0];
    uint64_t v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0];
    uint64_t v3 = 0x7465646279746573ULL ^ key[1];
    size_t whole = length - length % 8;
    for (size_t index = 0; index < whole; index += 8) {
        uint64_t word;
        memcpy(&word, bytes + index, 8);
        v3 ^= word;
        SIP_ROUND(v0, v1, v2, v3);
        SIP_ROUND(v0, v1, v2, v3);
        v0 ^= word;
    }
    uint64_t last = (uint64_t)length << 56;
    for (size_t index = 0; index < length % 8; index++) {
        last |= (uint64_t)bytes[whole + index] << (8 * index);
    }
    v3 ^= last;
    SIP_ROUND(v0, v1, v2, v3);
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= last;
    v2 ^= 0xff;
    for (int round = 0; round < 4; round++) {
        SIP_ROUND(v0, v1, v2, v3);
    }
    return v0 ^ v1 ^ v2 ^ v3;
}

int map_init(struct entry_map *map) {
    memset(map, 0, sizeof(*map));
    map->bucket_count = 1024;
    map->buckets = calloc(map->bucket_count, sizeof(*map->buckets));
    if (!map->buckets) {
        errno = ENOMEM;
        return -1;
    }
    if (getrandom(map->hash_key, sizeof(map->hash_key), 0) != (ssize_t)sizeof(map->hash_key)) {
        return -1;
    }
    return 0;
}

void entry_free(struct entry *entry) {
    if (!entry) {
        return;
    }
    free(entry->key);
    free(entry->record);
    free(entry->client);
    free(entry);
}

void map_free(struct entry_map *map) {
    for (size_t index = 0; index < map->bucket_count; index++) {
        struct entry *entry = map->buckets[index];
        while (entry) {
            struct entry *next = entry->next;
            entry_free(entry);
            entry = next;
        }
    }
    free(map->buckets);
    memset(map, 0, sizeof(*map));
}

struct entry *map_find(const struct entry_map *map, const char *key, size_t key_len) {
    if (!map->buckets) {
        return NULL;
    }
    uint64_t hash = siphash24(map->hash_key, key, key_len);
    for (struct entry *entry = map->buckets[hash % map->bucket_count]; entry; entry = entry->next) {
        if (entry->hash == hash && entry->key_len == key_len && memcmp(entry->key, key, key_len) == 0) {
            return entry;
        }
    }
    return NULL;
}

static void map_grow(struct entry_map *map) {
    size_t bucket_count = map->bucket_count * 2;
    struct entry **buckets = calloc(bucket_count, sizeof(*buckets));
    if (!buckets) {
        return; // The map stays correct, only slower.
    }
    for (size_t index = 0; index < map->bucket_count; index++) {
        struct entry *entry = map->buckets[index];
        while (entry) {
            struct entry *next = entry->next;
            entry->next = buckets[entry->hash % bucket_count];
            buckets[entry->hash % bucket_count] = entry;
            entry = next;
        }
    }
    free(map->buckets);
    map->buckets = buckets;
    map->bucket_count = bucket_count;
}

struct entry *map_upsert(struct entry_map *map, const char *key, size_t key_len, bool *created) {
    struct entry *found = map_find(map, key, key_len);
    if (found) {
        *created = false;
        return found;
    }
    struct entry *entry = calloc(1, sizeof(*entry));
    if (!entry) {
        return NULL;
    }
    entry->key = malloc(key_len + 1);
    if (!entry->key) {
        free(entry);
        return NULL;
    }
    memcpy(entry->key, key, key_len);
    entry->key[key_len] = '\0';
    entry->key_len = key_len;
    entry->hash = siphash24(map->hash_key, key, key_len);
    if (map->count + 1 > map->bucket_count / 4 * 3) {
        map_grow(map);
    }
    size_t bucket = entry->hash % map->bucket_count;
    entry->next = map->buckets[bucket];
    map->buckets[bucket] = entry;
    map->count++;
    *created = true;
    return entry;
}

void map_remove(struct entry_map *map, struct entry *entry) {
    struct entry **link = &map->buckets[entry->hash % map->bucket_count];
    while (*link && *link != entry) {
        link = &(*link)->next;
    }
    if (*link) {
        *link = entry->next;
        map->count--;
        entry_free(entry);
    }
}

void map_each(const struct entry_map *map, void (*visit)(struct entry *, void *), void *context) {
    for (size_t index = 0; index < map->bucket_count; index++) {
        for (struct entry *entry = map->buckets[index]; entry; entry = entry->next) {
            visit(entry, context);
        }
    }
}
