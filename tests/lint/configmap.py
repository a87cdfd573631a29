"""Check or rewrite deploy/kubernetes/base/configmap.yaml from the repository's broker files.

The ConfigMap carries mosquitto.conf.template and config/acl verbatim, because kustomize
loads no file from outside the kustomization's directory. This script keeps the copy true.

Usage:
  python3 tests/lint/configmap.py           exit 0 when the ConfigMap matches, 1 otherwise
  python3 tests/lint/configmap.py --write   rewrite the ConfigMap from the files

The check needs PyYAML (installed with kubernetes-validate); --write needs only the standard
library.
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGMAP = ROOT / "deploy/kubernetes/base/configmap.yaml"
# ConfigMap key -> file at the repository root.
SOURCES = {
    "mosquitto.conf.template": ROOT / "mosquitto.conf.template",
    "acl": ROOT / "config/acl",
}

HEADER = """\
# The broker's configuration template and ACL, copied verbatim from mosquitto.conf.template and
# config/acl at the repository root. Do not edit them here: change those files, then run
# `python3 tests/lint/configmap.py --write` (tests/lint/run.sh fails while the copies differ).
# To use your own template or ACL in a deployment, replace this ConfigMap in an overlay.
apiVersion: v1
kind: ConfigMap
metadata:
  name: mosquitto-config
  labels:
    app.kubernetes.io/name: mosquitto
    app.kubernetes.io/component: broker
data:
"""


def literal_block(key: str, text: str) -> str:
    """Format one data entry as a YAML literal block scalar that keeps `text` byte for byte."""
    if "\r" in text:
        raise ValueError(f"{key}: a YAML block scalar cannot keep carriage returns; convert the file to LF line endings")
    if text.endswith("\n\n"):
        indicator = "|+"
    elif text.endswith("\n"):
        indicator = "|"
    else:
        indicator = "|-"
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    if lines and lines[0].startswith(" "):
        indicator += "4"
    body = "".join(f"    {line}\n" if line else "\n" for line in lines)
    return f"  {key}: {indicator}\n{body}"


def render() -> str:
    return HEADER + "".join(
        literal_block(key, path.read_text(encoding="utf-8")) for key, path in SOURCES.items()
    )


def check() -> int:
    import yaml

    data = yaml.safe_load(CONFIGMAP.read_text(encoding="utf-8")).get("data") or {}
    failures = 0
    for key, path in SOURCES.items():
        expected = path.read_text(encoding="utf-8")
        if data.get(key) != expected:
            print(f"{CONFIGMAP.relative_to(ROOT)}: data.{key} differs from "
                  f"{path.relative_to(ROOT)}; run `python3 tests/lint/configmap.py --write`")
            failures += 1
    extra = sorted(set(data) - set(SOURCES))
    if extra:
        print(f"{CONFIGMAP.relative_to(ROOT)}: unexpected data keys {extra}; "
              f"run `python3 tests/lint/configmap.py --write`")
        failures += 1
    return 1 if failures else 0


def main(arguments: list[str]) -> int:
    if arguments == ["--write"]:
        CONFIGMAP.write_text(render(), encoding="utf-8")
        print(f"wrote {CONFIGMAP.relative_to(ROOT)}")
        return 0
    if arguments:
        print(f"unknown arguments {arguments}; usage: configmap.py [--write]", file=sys.stderr)
        return 64
    return check()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
