#!/usr/bin/env python3
"""Raw MQTT 3.1.1 and 5 client for the journal-mode tests and benchmarks.

It uses the standard library only, so any python3 inside the test namespaces runs it. It speaks
raw MQTT, so that it can stop a QoS 2 exchange before PUBREL, leave without DISCONNECT, read the
broker's Message Expiry Interval, and send SIGKILL to a process the moment an acknowledgement
arrives.

Payloads travel as hexadecimal text in both directions. Every subcommand prints JSON on standard
output and exits with 0, or with 1 and a message on standard error.
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, DISCONNECT = 8, 9, 14
PROPERTY_EXPIRY, PROPERTY_CONTENT_TYPE, PROPERTY_SESSION_EXPIRY, PROPERTY_USER = 0x02, 0x03, 0x11, 0x26


class ProtocolError(Exception):
    pass


def encode_string(value):
    data = value.encode("utf-8") if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def encode_varint(value):
    out = bytearray()
    while True:
        digit = value % 128
        value //= 128
        out.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(out)


def decode_varint(data, offset):
    value, shift = 0, 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7


def encode_properties(properties):
    """Encodes a dict of MQTT v5 publish properties: expiry (int), content_type (str), user (list of pairs)."""
    out = bytearray()
    if properties.get("expiry") is not None:
        out += bytes([PROPERTY_EXPIRY]) + struct.pack("!I", properties["expiry"])
    if properties.get("content_type") is not None:
        out += bytes([PROPERTY_CONTENT_TYPE]) + encode_string(properties["content_type"])
    for name, value in properties.get("user", []):
        out += bytes([PROPERTY_USER]) + encode_string(name) + encode_string(value)
    return encode_varint(len(out)) + bytes(out)


def decode_properties(data):
    """Returns the publish properties that this client decodes, as a dict."""
    result, offset = {}, 0
    while offset < len(data):
        identifier = data[offset]
        offset += 1
        if identifier == PROPERTY_EXPIRY:
            result["expiry"] = struct.unpack_from("!I", data, offset)[0]
            offset += 4
        elif identifier in (PROPERTY_CONTENT_TYPE, 0x08, 0x09):
            length = struct.unpack_from("!H", data, offset)[0]
            value = data[offset + 2:offset + 2 + length]
            if identifier == PROPERTY_CONTENT_TYPE:
                result["content_type"] = value.decode("utf-8")
            offset += 2 + length
        elif identifier == PROPERTY_USER:
            pair = []
            for _ in range(2):
                length = struct.unpack_from("!H", data, offset)[0]
                pair.append(data[offset + 2:offset + 2 + length].decode("utf-8"))
                offset += 2 + length
            result.setdefault("user", []).append(pair)
        elif identifier == 0x01:
            offset += 1
        elif identifier == 0x0B:
            _, offset = decode_varint(data, offset)
        elif identifier == 0x23:
            offset += 2
        else:
            raise ProtocolError("unknown property 0x%02x" % identifier)
    return result


class Client:
    def __init__(self, host, port, client_id, version=4, clean=True, username=None, password=None,
                 session_expiry=None, will=None, timeout=10.0):
        self.version = version
        self.timeout = timeout
        self.buffer = b""
        self.next_mid = 1
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flags = 0x02 if clean else 0
        payload = encode_string(client_id)
        if will:
            flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
            if version == 5:
                payload += encode_properties({})
            payload += encode_string(will["topic"]) + encode_string(bytes.fromhex(will["payload"]))
        if username is not None:
            flags |= 0x80
            payload += encode_string(username)
        if password is not None:
            flags |= 0x40
            payload += encode_string(password)
        header = encode_string("MQTT") + bytes([version, flags]) + struct.pack("!H", 60)
        if version == 5:
            properties = b""
            if session_expiry is not None:
                properties = bytes([PROPERTY_SESSION_EXPIRY]) + struct.pack("!I", session_expiry)
            header += encode_varint(len(properties)) + properties
        self.send(CONNECT << 4, header + payload)
        kind, _, body = self.read_packet()
        reason = body[1] if len(body) > 1 else 255
        if kind != CONNACK or reason != 0:
            raise ProtocolError("CONNECT rejected: packet type %d, reason code %d" % (kind, reason))
        self.session_present = bool(body[0] & 1)

    def send(self, first_byte, body):
        self.sock.sendall(bytes([first_byte]) + encode_varint(len(body)) + body)

    def read_packet(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buffer) >= 2:
                try:
                    length, offset = decode_varint(self.buffer, 1)
                except IndexError:
                    length, offset = None, 0
                if length is not None and len(self.buffer) >= offset + length:
                    first = self.buffer[0]
                    body = self.buffer[offset:offset + length]
                    self.buffer = self.buffer[offset + length:]
                    return first >> 4, first & 0x0F, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no packet within %.1f s" % (self.timeout if timeout is None else timeout))
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if ready:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                self.buffer += chunk

    def mid(self):
        value = self.next_mid
        self.next_mid = self.next_mid % 65535 + 1
        return value

    def publish_packet(self, topic, payload, qos, retain, mid, properties=None):
        body = encode_string(topic)
        if qos:
            body += struct.pack("!H", mid)
        if self.version == 5:
            body += encode_properties(properties or {})
        self.send((PUBLISH << 4) | (qos << 1) | (1 if retain else 0), body + payload)

    def wait_for(self, kind, mid):
        """Reads until the acknowledgement `kind` for `mid`; returns its reason code (0 when absent)."""
        while True:
            got, _, body = self.read_packet()
            if got == kind and struct.unpack_from("!H", body)[0] == mid:
                return body[2] if self.version == 5 and len(body) > 2 else 0

    def publish(self, topic, payload, qos=1, retain=True, properties=None, release=True):
        """Publishes and waits for PUBACK, or PUBREC then PUBCOMP; returns the reason code.

        With release=False a QoS 2 publish stops after PUBREC: PUBREL is never sent."""
        mid = self.mid()
        self.publish_packet(topic, payload, qos, retain, mid, properties)
        if qos == 0:
            return 0
        if qos == 1:
            return self.wait_for(PUBACK, mid)
        reason = self.wait_for(PUBREC, mid)
        if not release or reason >= 0x80:
            return reason
        self.send((PUBREL << 4) | 0x02, struct.pack("!H", mid))
        return self.wait_for(PUBCOMP, mid)

    def subscribe(self, filters, qos=0):
        mid = self.mid()
        body = struct.pack("!H", mid)
        if self.version == 5:
            body += b"\x00"
        for topic_filter in filters:
            body += encode_string(topic_filter) + bytes([qos])
        self.send((SUBSCRIBE << 4) | 0x02, body)
        received = []
        while True:
            kind, flags, packet = self.read_packet()
            if kind == SUBACK:
                return received
            if kind == PUBLISH:
                received.append(self.decode_publish(flags, packet))

    def decode_publish(self, flags, body):
        qos = (flags >> 1) & 3
        length = struct.unpack_from("!H", body)[0]
        topic = body[2:2 + length].decode("utf-8")
        offset = 2 + length
        mid = None
        if qos:
            mid = struct.unpack_from("!H", body, offset)[0]
            offset += 2
        properties = {}
        if self.version == 5:
            length, offset = decode_varint(body, offset)
            properties = decode_properties(body[offset:offset + length])
            offset += length
        if qos == 1:
            self.send(PUBACK << 4, struct.pack("!H", mid))
        elif qos == 2:
            self.send(PUBREC << 4, struct.pack("!H", mid))
        return {"topic": topic, "payload": body[offset:].hex(), "retain": bool(flags & 1), "qos": qos,
                "properties": properties, "mid": mid}

    def messages(self, quiet):
        """Yields PUBLISH packets until none arrives for `quiet` seconds (QoS 2 completes with PUBCOMP)."""
        while True:
            try:
                kind, flags, body = self.read_packet(timeout=quiet)
            except socket.timeout:
                return
            if kind == PUBLISH:
                yield self.decode_publish(flags, body)
            elif kind == PUBREL:
                self.send(PUBCOMP << 4, body[:2])

    def disconnect(self):
        self.send(DISCONNECT << 4, b"")
        self.sock.close()

    def drop(self):
        """Closes the socket without DISCONNECT, so a will is published."""
        self.sock.close()


def connect(arguments, client_id=None, **extra):
    return Client(arguments.host, arguments.port, client_id or arguments.client_id, version=arguments.version,
                  username=arguments.username, password=arguments.password, **extra)


def command_ops(arguments):
    """Applies operations read from standard input, one JSON object a line, each acknowledged before
    the next: {"topic": ..., "payload": hex ("" deletes), "qos": 0|1|2, "expiry": seconds or absent}.
    With --kill-pid and --kill-after N it sends SIGKILL right after the acknowledgement of operation N."""
    client = connect(arguments)
    done = 0
    started = time.monotonic()
    for index, line in enumerate(sys.stdin):
        if not line.strip():
            continue
        operation = json.loads(line)
        properties = {"expiry": operation["expiry"]} if operation.get("expiry") is not None else None
        reason = client.publish(operation["topic"], bytes.fromhex(operation["payload"]), operation["qos"],
                                True, properties)
        done += 1
        if reason >= 0x80:
            raise ProtocolError("operation %d was rejected with reason code 0x%02x" % (index, reason))
        if arguments.kill_pid and index == arguments.kill_after:
            os.kill(arguments.kill_pid, signal.SIGKILL)
            print(json.dumps({"acknowledged": done, "killed_after": index}))
            return
    client.disconnect()
    print(json.dumps({"acknowledged": done, "seconds": time.monotonic() - started}))


def command_retained(arguments):
    """Prints the retained messages under the filters, as a JSON object keyed by topic."""
    client = connect(arguments, client_id="%s-reader" % arguments.client_id)
    result = {}
    for message in client.subscribe(arguments.filter, qos=2) + list(client.messages(arguments.quiet)):
        if message["retain"]:
            result[message["topic"]] = {"payload": message["payload"], "qos": message["qos"],
                                        "properties": message["properties"]}
    client.disconnect()
    print(json.dumps(result, sort_keys=True))


def command_publish(arguments):
    """One publish; with --no-release a QoS 2 publish stops after PUBREC and the socket is closed."""
    client = connect(arguments, clean=not arguments.persistent,
                     session_expiry=0xFFFFFFFF if arguments.persistent and arguments.version == 5 else None)
    properties = {}
    if arguments.expiry is not None:
        properties["expiry"] = arguments.expiry
    if arguments.content_type is not None:
        properties["content_type"] = arguments.content_type
    for pair in arguments.user_property:
        properties.setdefault("user", []).append(pair.split("=", 1))
    reason = client.publish(arguments.topic, bytes.fromhex(arguments.payload), arguments.qos, not arguments.no_retain,
                            properties, release=not arguments.no_release)
    if arguments.kill_pid:
        os.kill(arguments.kill_pid, signal.SIGKILL)
    if arguments.no_release or arguments.kill_pid:
        client.drop()
    else:
        client.disconnect()
    print(json.dumps({"reason": reason}))


def command_release(arguments):
    """Resumes a persistent session and sends PUBREL for --mid, as a client does after a reconnect."""
    client = connect(arguments, clean=False, session_expiry=0xFFFFFFFF if arguments.version == 5 else None)
    client.send((PUBREL << 4) | 0x02, struct.pack("!H", arguments.mid))
    reason = client.wait_for(PUBCOMP, arguments.mid)
    client.disconnect()
    print(json.dumps({"session_present": client.session_present, "reason": reason}))


def command_hold(arguments):
    """Publishes QoS 2 messages without PUBREL over one connection, then one more publish at
    --last-qos, and prints each reason code: fills the broker's receive quota for the client."""
    client = connect(arguments)
    reasons = [client.publish(topic, b"held", 2, True, release=False) for topic in arguments.held]
    reasons.append(client.publish(arguments.topic, bytes.fromhex(arguments.payload), arguments.last_qos, True))
    time.sleep(0.2)
    client.drop()
    print(json.dumps({"reasons": reasons}))


def command_will(arguments):
    """Connects with a will and drops the connection without DISCONNECT."""
    will = {"topic": arguments.topic, "payload": arguments.payload, "qos": arguments.qos, "retain": True}
    client = connect(arguments, will=will, clean=True)
    time.sleep(0.1)
    client.drop()
    print(json.dumps({"dropped": True}))


def command_session(arguments):
    """Connects a persistent session, optionally subscribes, collects what arrives, disconnects."""
    client = connect(arguments, clean=False, session_expiry=0xFFFFFFFF if arguments.version == 5 else None)
    received = []
    if arguments.subscribe:
        received += client.subscribe(arguments.subscribe, qos=arguments.qos)
    received += list(client.messages(arguments.quiet))
    client.disconnect()
    print(json.dumps({"session_present": client.session_present, "received": received}))


def summary(function):
    """The first sentence of a function's docstring, for --help."""
    text = " ".join(function.__doc__.split())
    return text.split(". ")[0].split(": {")[0]


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--client-id", default="journal-test-%d" % os.getpid())
    parser.add_argument("--version", type=int, choices=[4, 5], default=4, help="4 for MQTT 3.1.1, 5 for MQTT 5")
    parser.add_argument("--username")
    parser.add_argument("--password")
    commands = parser.add_subparsers(dest="command", required=True)

    ops = commands.add_parser("ops", help=summary(command_ops))
    ops.add_argument("--kill-pid", type=int)
    ops.add_argument("--kill-after", type=int, default=-1)

    retained = commands.add_parser("retained", help=summary(command_retained))
    retained.add_argument("--filter", action="append", default=[])
    retained.add_argument("--quiet", type=float, default=0.5, help="seconds without a message that end the read")

    publish = commands.add_parser("publish", help=summary(command_publish))
    publish.add_argument("--topic", required=True)
    publish.add_argument("--payload", default="", help="hexadecimal; empty deletes the retained message")
    publish.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    publish.add_argument("--no-retain", action="store_true")
    publish.add_argument("--no-release", action="store_true")
    publish.add_argument("--persistent", action="store_true", help="connect with a persistent session (clean session off)")
    publish.add_argument("--expiry", type=int)
    publish.add_argument("--content-type")
    publish.add_argument("--user-property", action="append", default=[], help="NAME=VALUE")
    publish.add_argument("--kill-pid", type=int, help="send SIGKILL to this pid the moment the acknowledgement arrives")

    release = commands.add_parser("release", help=summary(command_release))
    release.add_argument("--mid", type=int, default=1)

    hold = commands.add_parser("hold", help=summary(command_hold))
    hold.add_argument("--held", action="append", default=[], help="topic of a QoS 2 publish left without PUBREL")
    hold.add_argument("--topic", required=True)
    hold.add_argument("--payload", required=True)
    hold.add_argument("--last-qos", type=int, choices=[1, 2], default=1)

    will = commands.add_parser("will", help=summary(command_will))
    will.add_argument("--topic", required=True)
    will.add_argument("--payload", required=True)
    will.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)

    session = commands.add_parser("session", help=summary(command_session))
    session.add_argument("--subscribe", action="append", default=[])
    session.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    session.add_argument("--quiet", type=float, default=0.5)
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    handlers = {"ops": command_ops, "retained": command_retained, "publish": command_publish, "release": command_release,
                "hold": command_hold,
                "will": command_will, "session": command_session}
    try:
        handlers[arguments.command](arguments)
    except (OSError, ProtocolError, ValueError) as error:
        print("journal_mqtt: %s failed: %s" % (arguments.command, error), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
