"""The private network namespace the end-to-end tier runs in.

libwebrtc ignores loopback when it gathers ICE candidates, so the tier needs a real
(virtual) interface: a fresh network namespace with a veth pair, 10.200.0.1 ↔ 10.200.0.2.
Nothing in it can reach, or is reachable from, the machine's real interfaces.
`unshare -n` needs root; `unshare -rn` works where unprivileged user namespaces are allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

ENV_MARKER = "S2S_E2E_NETNS"
HOST = "10.200.0.1"
PEER = "10.200.0.2"
# Link names of more than one letter: `ip` parses some single letters as keywords.
SETUP = (
    "ip link set lo up"
    " && ip link add lkva type veth peer name lkvb"
    f" && ip addr add {HOST}/24 dev lkva"
    f" && ip addr add {PEER}/24 dev lkvb"
    " && ip link set lkva up"
    " && ip link set lkvb up"
)


def inside() -> bool:
    """True in the process tree the runner started inside the namespace."""
    return os.environ.get(ENV_MARKER) == "1"


@cache
def unshare_prefix() -> tuple[tuple[str, ...], str]:
    """The command prefix that enters a fresh network namespace, or () and why not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return (), "util-linux `unshare` is not installed"
    if shutil.which("ip") is None:
        return (), "iproute2 `ip` is not installed (Debian: apt-get install iproute2)"
    candidates = [(unshare, "-n")] if os.geteuid() == 0 else []
    candidates.append((unshare, "-rn"))  # user namespace + network namespace, no root needed
    errors = []
    for prefix in candidates:
        try:
            probe = subprocess.run(
                [*prefix, "sh", "-c", SETUP], capture_output=True, text=True, timeout=15
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{' '.join(prefix)}: {exc}")
            continue
        if probe.returncode == 0:
            return prefix, ""
        errors.append(f"{' '.join(prefix)}: {probe.stderr.strip() or probe.returncode}")
    return (), "cannot create a network namespace with a veth pair (" + "; ".join(errors) + ")"


def command(argv: list[str]) -> list[str]:
    """`argv` run inside a fresh namespace with the veth pair up (raises if unavailable)."""
    prefix, why = unshare_prefix()
    if not prefix:
        raise RuntimeError(why)
    return [*prefix, "sh", "-c", f'{SETUP} && exec "$@"', "lk-netns", *argv]
