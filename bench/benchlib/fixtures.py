"""The benchmark's temporary tree: passphrase, template, encrypted stores, plain directories and
pre-filled Mosquitto databases.

Everything lives under one directory made with mkdtemp, which `remove(tree)` deletes.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile

from . import mqtt, processes, procfs

BROKER_USER = "mosquitto"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PAYLOAD_BYTES = 100
# Port of the throwaway broker that fills the databases; the brokers under test use 1883 and up.
FILL_PORT = 18830


def retained_topic(index):
    return f"bench/retained/{index:05d}"


def payload(index):
    """Return PAYLOAD_BYTES printable bytes that differ per index and per call."""
    return (f"{index:05d}-" + os.urandom(PAYLOAD_BYTES).hex())[:PAYLOAD_BYTES].encode()


class Tree:
    def __init__(self, repository, supervisor):
        self.repository = repository
        self.supervisor = supervisor
        self.root = tempfile.mkdtemp(prefix="bench-", dir="/tmp")
        # The broker user must be able to reach the mountpoints and plain directories below.
        os.chmod(self.root, 0o755)
        for name in ("secrets", "etc", "run", "logs", "databases", "stores", "plain"):
            os.mkdir(self.path(name), 0o755)
        os.chmod(self.path("secrets"), 0o700)
        self.passfile = self.path("secrets/passphrase")
        with open(os.open(self.passfile, os.O_WRONLY | os.O_CREAT, 0o600), "w") as passfile:
            passfile.write("benchmark passphrase " + os.urandom(8).hex() + "\n")
        self.template = self.path("etc/mosquitto.conf.template")
        self.acl = self.path("etc/acl")
        shutil.copy(os.path.join(repository, "mosquitto.conf.template"), self.template)
        shutil.copy(os.path.join(repository, "config/acl"), self.acl)
        self.broker = pwd.getpwnam(BROKER_USER)

    def path(self, relative):
        return os.path.join(self.root, relative)

    def log(self, name):
        return self.path(f"logs/{name}.log")

    @property
    def passphrase(self):
        with open(self.passfile, "rb") as passfile:
            return passfile.readline()

    def give_to_broker(self, path, mode):
        os.chown(path, self.broker.pw_uid, self.broker.pw_gid)
        os.chmod(path, mode)

    def environment(self, store, port=1883, websockets_port=9001):
        """Return the environment of `supervisor run` on `store`, which bench/entrypoint.sh reads too."""
        environment = {
            "PATH": PATH,
            "SUPERVISOR_MOUNTPOINT": store.mountpoint,
            "SUPERVISOR_PASSFILE": self.passfile,
            "SUPERVISOR_TEMPLATE": self.template,
            "SUPERVISOR_CONFIG": self.path(f"run/{store.name}-{port}.conf"),
            "SUPERVISOR_SOCKET": self.path(f"run/{store.name}-{port}.sock"),
            "MOSQUITTO_ACL_FILE": self.acl,
            "MOSQUITTO_BIND_ADDRESS": "127.0.0.1",
            "MOSQUITTO_PORT": str(port),
            "MOSQUITTO_WEBSOCKETS_PORT": str(websockets_port),
        }
        if store.cipherdir:
            environment["SUPERVISOR_CIPHERDIR"] = store.cipherdir
        return environment

    def render(self, environment, name, per_change_autosave=True):
        """Write the configuration `supervisor render` produces for `environment` to run/NAME.conf.

        Without per-change autosave the two autosave lines are dropped, which leaves Mosquitto's
        defaults (autosave_on_changes false, autosave_interval 1800 s).
        """
        text = processes.run([self.supervisor, "render"], environment=environment)
        if not per_change_autosave:
            text = "".join(line for line in text.splitlines(keepends=True)
                           if not line.startswith(("autosave_on_changes", "autosave_interval")))
        path = self.path(f"run/{name}.conf")
        with open(path, "w") as config:
            config.write(text)
        os.chmod(path, 0o644)
        return path

    def fill_database(self, count):
        """Return the path of a Mosquitto database with `count` retained messages (None for 0).

        A throwaway broker without per-change autosave receives the messages and saves them
        once, on SIGTERM.
        """
        if count == 0:
            return None
        directory = self.path(f"databases/{count}")
        os.mkdir(directory)
        self.give_to_broker(directory, 0o700)
        config = self.path(f"run/fill-{count}.conf")
        with open(config, "w") as file:
            file.write(f"user {BROKER_USER}\npersistence true\npersistence_location {directory}/\n"
                       f"persistence_file mosquitto.db\nlistener {FILL_PORT} 127.0.0.1\nallow_anonymous true\n")
        log = self.log(f"fill-{count}")
        broker = processes.start(["mosquitto", "-c", config], log)
        try:
            processes.wait_ready(broker, FILL_PORT, log)
            publisher = mqtt.Publisher(FILL_PORT, "bench-fill", None)
            publisher.publish_many((retained_topic(index), payload(index)) for index in range(count))
            publisher.close()
        finally:
            broker.send_signal(signal.SIGTERM)
            code = processes.wait_exit(broker, 60)
        database = os.path.join(directory, "mosquitto.db")
        if code != 0 or not os.path.exists(database):
            raise processes.failure(f"the broker that fills {database} exited with {code}", log)
        return database


class EncryptedStore:
    """A gocryptfs cipherdir, initialized and holding a copy of `database`, and its mountpoint."""

    def __init__(self, tree, name, database):
        self.name = name
        self.cipherdir = tree.path(f"stores/{name}/cipher")
        self.mountpoint = tree.path(f"stores/{name}/mnt")
        os.makedirs(self.cipherdir, 0o700)
        os.mkdir(self.mountpoint, 0o755)
        processes.run(["gocryptfs", "-init", "-q", "-passfile", tree.passfile, "--", self.cipherdir], timeout=120)
        self.mount(tree)
        try:
            tree.give_to_broker(self.mountpoint, 0o700)
            if database:
                target = os.path.join(self.mountpoint, "mosquitto.db")
                shutil.copyfile(database, target)
                tree.give_to_broker(target, 0o600)
        finally:
            self.unmount()

    def mount(self, tree):
        """Mount with gocryptfs in the background; gocryptfs returns once the mount is ready.

        The daemon keeps the output descriptors it inherits, so they go to a log file: a pipe
        would never reach end of file while the mount is up.
        """
        log = tree.log(f"mount-{self.name}")
        mounter = processes.start(["gocryptfs", "-q", "-nosyslog", "-allow_other", "-passfile", tree.passfile,
                                   "--", self.cipherdir, self.mountpoint], log)
        code = processes.wait_exit(mounter, 60)
        if code != 0:
            raise processes.failure(f"gocryptfs could not mount {self.cipherdir}: exit code {code}", log)

    def unmount(self):
        processes.run(["fusermount3", "-u", "--", self.mountpoint])
        processes.reap_orphans()
        if procfs.is_mounted(self.mountpoint):
            raise processes.BenchmarkError(f"{self.mountpoint} is still mounted after fusermount3 -u")


class PlainDirectory:
    """A directory owned by the broker user holding a copy of `database`, like a plain volume."""

    # A plain directory has no cipherdir; the broker's persistence_location is the directory.
    cipherdir = None

    def __init__(self, tree, name, database):
        self.name = name
        self.mountpoint = tree.path(f"plain/{name}")
        os.mkdir(self.mountpoint)
        tree.give_to_broker(self.mountpoint, 0o700)
        if database:
            target = os.path.join(self.mountpoint, "mosquitto.db")
            shutil.copyfile(database, target)
            tree.give_to_broker(target, 0o600)


def remove(tree):
    """Unmount whatever is still mounted below the tree and deletes it."""
    with open("/proc/self/mountinfo") as mountinfo:
        mounted = [line.split()[4] for line in mountinfo if line.split()[4].startswith(tree.root + "/")]
    for path in mounted:
        subprocess.run(["fusermount3", "-u", "-z", "--", path], capture_output=True)
    processes.reap_orphans()
    shutil.rmtree(tree.root, ignore_errors=True)
