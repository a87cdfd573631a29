#!/usr/bin/env python3
"""MQTT 3.1.1 client for the durability tests and the loss-window measurement.

It publishes retained QoS 1 messages, reads retained messages back, and sends SIGKILL to a
process a measured time after a PUBACK. It uses the standard library only, so any python3
inside the test namespaces can run it, and it talks raw MQTT so that the time of each PUBACK
is taken right where the packet is read.

Payloads travel as hexadecimal text in both directions, so binary payloads stay exact.
Every subcommand prints JSON on standard output and exits with 0, or with 1 and a message
on standard error.
"""

import argparse
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14


class ProtocolError(Exception):
    pass


def encode_string(text):
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def encode_length(length):
    encoded = bytearray()
    while True:
        digit = length % 128
        length //= 128
        if length > 0:
            digit |= 0x80
        encoded.append(digit)
        if length == 0:
            return bytes(encoded)


def packet(first_byte, body):
    return bytes([first_byte]) + encode_length(len(body)) + body


class Client:
    """One MQTT connection with a receive buffer, for use from one thread."""

    def __init__(self, host, port, client_id, username, clean_session=True, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.closed = False
        self.next_packet_id = 1
        flags = 0x80 | (0x02 if clean_session else 0)
        body = encode_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60)
        body += encode_string(client_id) + encode_string(username)
        self.sock.sendall(packet(CONNECT << 4, body))
        kind, _, payload = self.read_packet(deadline=time.monotonic() + timeout)
        if kind != CONNACK or len(payload) != 2 or payload[1] != 0:
            raise ProtocolError(f"CONNECT as {client_id} was rejected: packet type {kind}, body {payload.hex()}")

    def allocate_packet_id(self):
        packet_id = self.next_packet_id
        self.next_packet_id = packet_id % 65535 + 1
        return packet_id

    def send_publish(self, topic, payload, qos=1, retain=True):
        body = encode_string(topic)
        packet_id = None
        if qos > 0:
            packet_id = self.allocate_packet_id()
            body += struct.pack("!H", packet_id)
        self.sock.sendall(packet((PUBLISH << 4) | (qos << 1) | (1 if retain else 0), body + payload))
        return packet_id

    def send_subscribe(self, topic_filter, qos=0):
        packet_id = self.allocate_packet_id()
        body = struct.pack("!H", packet_id) + encode_string(topic_filter) + bytes([qos])
        self.sock.sendall(packet((SUBSCRIBE << 4) | 0x02, body))
        return packet_id

    def send_pingreq(self):
        self.sock.sendall(bytes([PINGREQ << 4, 0]))

    def disconnect(self):
        try:
            self.sock.sendall(bytes([DISCONNECT << 4, 0]))
        except OSError:
            pass
        self.sock.close()

    def take_packet(self):
        """Removes one whole packet from the buffer: (type, flags, body), or None if incomplete."""
        if len(self.buffer) < 2:
            return None
        multiplier, length, index = 1, 0, 1
        while True:
            if index >= len(self.buffer):
                return None
            digit = self.buffer[index]
            length += (digit & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if digit & 0x80 == 0:
                break
            if index > 4:
                raise ProtocolError("remaining length longer than 4 bytes")
        if len(self.buffer) < index + length:
            return None
        first = self.buffer[0]
        body = bytes(self.buffer[index:index + length])
        del self.buffer[:index + length]
        return first >> 4, first & 0x0F, body

    def fill(self, timeout):
        """Reads what the socket has within `timeout` seconds. Returns False once it is closed."""
        if self.closed:
            return False
        readable, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not readable:
            return True
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer.extend(data)
        return True

    def read_packet(self, deadline):
        """Waits for the next packet until the monotonic `deadline`. Returns None on timeout or close."""
        while True:
            received = self.take_packet()
            if received is not None:
                return received
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.fill(remaining):
                return None


def parse_publish(flags, body):
    """Returns (topic, payload, packet id) of a PUBLISH body."""
    (topic_length,) = struct.unpack("!H", body[:2])
    topic = body[2:2 + topic_length].decode("utf-8")
    offset = 2 + topic_length
    packet_id = None
    if (flags >> 1) & 0x03:
        (packet_id,) = struct.unpack("!H", body[offset:offset + 2])
        offset += 2
    return topic, body[offset:], packet_id


def puback_id(body):
    return struct.unpack("!H", body[:2])[0]


def connect(arguments, client_id=None):
    return Client(arguments.host, arguments.port, client_id or arguments.client_id,
                  arguments.username, clean_session=not arguments.persistent_session)


def emit(record):
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")


def command_publish(arguments):
    """Publishes each stdin line "topic<TAB>payload-hex" as a retained QoS 1 message.

    An empty payload clears the topic's retained message. At most --in-flight messages wait
    for their PUBACK at a time.
    """
    messages = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line:
            topic, _, payload_hex = line.partition("\t")
            messages.append((topic, bytes.fromhex(payload_hex)))
    client = connect(arguments)
    started = time.monotonic()
    waiting = set()
    sent = 0
    deadline = time.monotonic() + arguments.timeout
    while sent < len(messages) or waiting:
        while sent < len(messages) and len(waiting) < arguments.in_flight:
            topic, payload = messages[sent]
            waiting.add(client.send_publish(topic, payload))
            sent += 1
        received = client.read_packet(deadline)
        if received is None:
            raise ProtocolError(f"{len(waiting)} PUBACKs missing after {arguments.timeout} s ({sent} of {len(messages)} sent)")
        kind, _, body = received
        if kind == PUBACK:
            waiting.discard(puback_id(body))
    elapsed = time.monotonic() - started
    client.disconnect()
    emit({"published": len(messages), "seconds": round(elapsed, 3)})


def command_retained(arguments):
    """Subscribes at QoS 0 and prints every retained message the broker sends.

    Mosquitto queues the retained messages right after the SUBACK, so the PINGRESP to a
    PINGREQ sent after the SUBACK arrives after the last of them.
    """
    client = connect(arguments)
    client.send_subscribe(arguments.filter)
    deadline = time.monotonic() + arguments.timeout
    pinged = False
    while True:
        received = client.read_packet(deadline)
        if received is None:
            raise ProtocolError(f"no PINGRESP within {arguments.timeout} s after subscribing to {arguments.filter}")
        kind, flags, body = received
        if kind == SUBACK:
            if body[2:] == b"\x80":
                raise ProtocolError(f"the broker rejected the subscription to {arguments.filter}")
            client.send_pingreq()
            pinged = True
        elif kind == PUBLISH and flags & 0x01:
            topic, payload, _ = parse_publish(flags, body)
            emit({"topic": topic, "payload": payload.hex()})
        elif kind == PINGRESP and pinged:
            break
    client.disconnect()


def kill_at(pid, target_ns):
    """Sends SIGKILL to `pid` at the monotonic time `target_ns` and returns when it was sent.

    It sleeps until about 2 ms before the target, then spins, because a sleep alone can
    overshoot by more than a millisecond.
    """
    while True:
        remaining = target_ns - time.monotonic_ns()
        if remaining <= 0:
            break
        if remaining > 2_000_000:
            time.sleep((remaining - 2_000_000) / 1e9)
    sent = time.monotonic_ns()
    os.kill(pid, signal.SIGKILL)
    return sent


def command_kill_after_ack(arguments):
    """Publishes one retained QoS 1 message and kills --pid --delay-ms after its PUBACK."""
    client = connect(arguments)
    payload = bytes.fromhex(arguments.payload)
    packet_id = client.send_publish(arguments.topic, payload)
    deadline = time.monotonic() + arguments.timeout
    while True:
        received = client.read_packet(deadline)
        if received is None:
            raise ProtocolError(f"no PUBACK for {arguments.topic} within {arguments.timeout} s")
        kind, _, body = received
        if kind == PUBACK and puback_id(body) == packet_id:
            acknowledged = time.monotonic_ns()
            break
    killed = kill_at(arguments.pid, acknowledged + int(arguments.delay_ms * 1_000_000))
    emit({"topic": arguments.topic, "ack_to_kill_ms": round((killed - acknowledged) / 1e6, 3)})


def command_storm(arguments):
    """Publishes retained QoS 1 messages without pause and kills --pid after --kill-after s.

    Topic i % --topics gets message i. After the kill it keeps reading PUBACKs for up to a
    second. Then it prints one line per message sent: topic, payload, and the milliseconds
    from its PUBACK to the kill. That time is negative when the PUBACK came after the kill,
    and null when none came.
    """
    rng = random.Random(arguments.seed)
    client = connect(arguments)
    started = time.monotonic_ns()
    kill_time = started + int(arguments.kill_after * 1e9)
    killed_at = None
    sent = []
    pending = {}
    acknowledged = {}
    while killed_at is None or (not client.closed and time.monotonic_ns() < killed_at + 1_000_000_000):
        if killed_at is None and len(pending) < arguments.in_flight:
            index = len(sent)
            topic = f"{arguments.prefix}/{index % arguments.topics}"
            payload = f"{arguments.marker}-{index}-".encode() + bytes(rng.getrandbits(8) for _ in range(8))
            try:
                pending[client.send_publish(topic, payload)] = index
            except OSError:
                client.closed = True
            sent.append((topic, payload))
            continue
        now = time.monotonic_ns()
        if killed_at is None and now >= kill_time:
            killed_at = kill_at(arguments.pid, kill_time)
            continue
        wait = (kill_time - now) / 1e9 if killed_at is None else 0.05
        if not client.fill(min(wait, 0.05)):
            if killed_at is None:
                killed_at = kill_at(arguments.pid, kill_time)
            continue
        while (received := client.take_packet()) is not None:
            kind, _, body = received
            if kind == PUBACK and puback_id(body) in pending:
                acknowledged[pending.pop(puback_id(body))] = time.monotonic_ns()
    for index, (topic, payload) in enumerate(sent):
        acked = acknowledged.get(index)
        emit({
            "topic": topic,
            "payload": payload.hex(),
            "ack_before_kill_ms": None if acked is None else round((killed_at - acked) / 1e6, 3),
        })


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--username", default="alice", help="MQTT user name (default alice)")
    parser.add_argument("--client-id", default=f"durability-{os.getpid()}")
    parser.add_argument("--persistent-session", action="store_true",
                        help="connect with clean session off, so the broker stores the client id")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker (default 60)")
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser("publish", help="publish stdin lines 'topic<TAB>payload-hex'")
    publish.add_argument("--in-flight", type=int, default=1, help="messages awaiting PUBACK at a time (default 1)")
    publish.set_defaults(run=command_publish)

    retained = commands.add_parser("retained", help="print the retained messages under a filter")
    retained.add_argument("--filter", default="alice/#")
    retained.set_defaults(run=command_retained)

    kill = commands.add_parser("kill-after-ack", help="publish one message and SIGKILL a pid after its PUBACK")
    kill.add_argument("--pid", type=int, required=True, help="pid to kill, as this process sees it")
    kill.add_argument("--delay-ms", type=float, required=True, help="milliseconds from PUBACK to SIGKILL")
    kill.add_argument("--topic", required=True)
    kill.add_argument("--payload", required=True, help="payload as hexadecimal text")
    kill.set_defaults(run=command_kill_after_ack)

    storm = commands.add_parser("storm", help="publish without pause and SIGKILL a pid at a set moment")
    storm.add_argument("--pid", type=int, required=True, help="pid to kill, as this process sees it")
    storm.add_argument("--kill-after", type=float, required=True, help="seconds from the first PUBLISH to SIGKILL")
    storm.add_argument("--prefix", default="alice/storm", help="topic prefix (default alice/storm)")
    storm.add_argument("--topics", type=int, default=200, help="distinct topics the messages cycle through (default 200)")
    storm.add_argument("--marker", required=True, help="text at the start of every payload")
    storm.add_argument("--in-flight", type=int, default=8, help="messages awaiting PUBACK at a time (default 8)")
    storm.add_argument("--seed", type=int, default=0, help="seed of the random payload bytes")
    storm.set_defaults(run=command_storm)

    arguments = parser.parse_args()
    try:
        arguments.run(arguments)
    except (OSError, ProtocolError, ValueError) as error:
        print(f"durability_client {arguments.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
