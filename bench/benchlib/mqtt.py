"""The MQTT 3.1.1 packets the benchmark needs, over plain sockets.

Raw sockets keep the timing honest: a CONNACK or PUBACK is timed when its bytes are read,
with no client library thread or loop in between.
"""

import socket
import struct
import time

CONNACK = 0x20
PUBACK = 0x40
DISCONNECT = bytes([0xE0, 0x00])


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
        encoded.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(encoded)


def connect_packet(client_id, username=None):
    """Build a CONNECT with a clean session, keep-alive 60 s, and a username without a password."""
    flags = 0x02 | (0x80 if username else 0)
    body = encode_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + encode_string(client_id)
    if username:
        body += encode_string(username)
    return bytes([0x10]) + encode_length(len(body)) + body


def publish_packet(topic, payload, packet_id):
    """Build a PUBLISH with QoS 1 and the retain flag."""
    body = encode_string(topic) + struct.pack("!H", packet_id) + payload
    return bytes([0x30 | 0x02 | 0x01]) + encode_length(len(body)) + body


def receive_exactly(sock, count):
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ProtocolError(f"the broker closed the connection after {len(data)} of {count} bytes")
        data.extend(chunk)
    return bytes(data)


def try_connack(port, timeout):
    """Connect to 127.0.0.1:port and sends CONNECT.

    Returns the monotonic time at which the CONNACK was read, or None when nothing listens yet.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet("bench-ready-probe"))
        reply = receive_exactly(sock, 4)
        received = time.perf_counter()
        if reply[0] != CONNACK:
            raise ProtocolError(f"expected a CONNACK, got bytes {reply.hex()}")
        sock.sendall(DISCONNECT)
        return received
    except (ConnectionRefusedError, ConnectionResetError, ProtocolError):
        return None
    finally:
        sock.close()


class Publisher:
    """One connection that publishes retained QoS 1 messages, one at a time or in a window."""

    def __init__(self, port, client_id, username, timeout=30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(connect_packet(client_id, username))
        reply = receive_exactly(self.sock, 4)
        if reply[0] != CONNACK or reply[3] != 0:
            raise ProtocolError(f"CONNECT as {username} was rejected: {reply.hex()}")
        self.next_id = 1

    def _packet_id(self):
        packet_id = self.next_id
        self.next_id = packet_id % 65535 + 1
        return packet_id

    def _read_puback(self):
        reply = receive_exactly(self.sock, 4)
        if reply[0] != PUBACK:
            raise ProtocolError(f"expected a PUBACK, got bytes {reply.hex()}")
        return struct.unpack("!H", reply[2:4])[0]

    def publish_and_wait(self, topic, payload):
        """Publish one message and returns the seconds until its PUBACK."""
        packet_id = self._packet_id()
        started = time.perf_counter()
        self.sock.sendall(publish_packet(topic, payload, packet_id))
        acknowledged = self._read_puback()
        elapsed = time.perf_counter() - started
        if acknowledged != packet_id:
            raise ProtocolError(f"PUBACK for packet {acknowledged}, expected {packet_id}")
        return elapsed

    def publish_many(self, messages, window=200):
        """Publish (topic, payload) pairs with up to `window` unacknowledged at a time."""
        waiting = 0
        for topic, payload in messages:
            if waiting == window:
                self._read_puback()
                waiting -= 1
            self.sock.sendall(publish_packet(topic, payload, self._packet_id()))
            waiting += 1
        for _ in range(waiting):
            self._read_puback()

    def close(self):
        try:
            self.sock.sendall(DISCONNECT)
        except OSError:
            pass
        self.sock.close()
