"""A hostile agent for the confinement tests: it tries to leave its sandbox and reports how far it got.

Written against the public SDK like any user's agent. Each invocation is a JSON object whose ``op``
picks the attempt; every answer carries ``token`` (drawn at import, tells sandboxes apart), ``uid``,
``gid`` and ``pid``. Every system call goes through ctypes so the agent sees the kernel's answer
(errno names such as ``EPERM``), not a Python wrapper's.

Ops:

- ``whoami``: token, uid, gid, pid
- ``add_key``: adds a ``user`` key ``name`` holding ``secret`` to its user keyring (``add_key(2)``)
- ``find_key``: looks for key ``name`` in its user keyring (``request_key(2)``) and reads it
  (``keyctl(KEYCTL_READ)``)
- ``keyring_id``: ``keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING)``
- ``unshare``: ``unshare(CLONE_NEWUSER)``, and ``os.unshare`` where Python has it
- ``exists``: which of ``paths`` exist
- ``listdir``: the entries of ``path`` (``null`` if it cannot be listed)
- ``kill``: ``kill(pid, sig)``
- ``fill``: writes ``mib`` MiB of zeros to ``path`` in 1 MiB steps, flushing each; reports how many
  went in and the errno that stopped it; the file is removed afterwards unless ``keep``
"""

import ctypes
import errno
import os
import uuid

from bedrock_agentcore.runtime import BedrockAgentCoreApp

app = BedrockAgentCoreApp()
TOKEN = uuid.uuid4().hex

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SYS = {"add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272}  # x86_64
KEY_SPEC_USER_KEYRING = -4
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_READ = 11
CLONE_NEWUSER = 0x10000000


def _errno_name(code):
    return errno.errorcode.get(code, str(code))


def _sys(name, *args):
    """Calls a system call; returns {"ok": True, "value": r} or {"ok": False, "errno": "EPERM"}."""
    ctypes.set_errno(0)
    converted = [a if isinstance(a, (bytes, ctypes.Array)) else ctypes.c_long(a) for a in args]
    result = _libc.syscall(ctypes.c_long(SYS[name]), *converted)
    if result < 0:
        return {"ok": False, "errno": _errno_name(ctypes.get_errno())}
    return {"ok": True, "value": result}


def _add_key(name, secret):
    payload = secret.encode()
    return _sys("add_key", b"user", name.encode(), payload, len(payload), KEY_SPEC_USER_KEYRING)


def _find_key(name):
    found = _sys("request_key", b"user", name.encode(), 0, KEY_SPEC_USER_KEYRING)
    if not found["ok"]:
        return {"found": found}
    buffer = ctypes.create_string_buffer(4096)
    read = _sys("keyctl", KEYCTL_READ, found["value"], buffer, 4096)
    value = buffer.raw[: read["value"]].decode(errors="replace") if read["ok"] else None
    return {"found": found, "read": read, "value": value}


def _unshare():
    out = {"syscall": _sys("unshare", CLONE_NEWUSER)}
    if hasattr(os, "unshare"):
        try:
            os.unshare(os.CLONE_NEWUSER)
            out["os.unshare"] = "ok"
        except OSError as err:
            out["os.unshare"] = _errno_name(err.errno)
    return out


def _kill(pid, sig):
    ctypes.set_errno(0)
    if _libc.kill(ctypes.c_int(pid), ctypes.c_int(sig)) == 0:
        return "ok"
    return _errno_name(ctypes.get_errno())


def _fill(path, mib, keep):
    written, error = 0, None
    chunk = b"\0" * (1 << 20)
    try:
        with open(path, "wb") as handle:
            for _ in range(mib):
                handle.write(chunk)
                handle.flush()
                written += 1
    except OSError as err:
        error = _errno_name(err.errno)
    if not keep:
        try:
            os.unlink(path)
        except OSError:
            pass
    return {"written_mib": written, "error": error}


@app.entrypoint
def invoke(payload, context):
    """Dispatch on ``payload["op"]``; see the module docstring."""
    op = payload.get("op", "whoami") if isinstance(payload, dict) else "whoami"
    answer = {"op": op, "token": TOKEN, "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}
    if op == "whoami":
        pass
    elif op == "add_key":
        answer["result"] = _add_key(payload["name"], payload["secret"])
    elif op == "find_key":
        answer["result"] = _find_key(payload["name"])
    elif op == "keyring_id":
        answer["result"] = _sys("keyctl", KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 1)
    elif op == "unshare":
        answer["result"] = _unshare()
    elif op == "exists":
        answer["result"] = {p: os.path.exists(p) for p in payload["paths"]}
    elif op == "listdir":
        try:
            answer["result"] = sorted(os.listdir(payload["path"]))
        except OSError:
            answer["result"] = None
    elif op == "kill":
        answer["result"] = _kill(int(payload["pid"]), int(payload.get("sig", 0)))
    elif op == "fill":
        answer["result"] = _fill(payload["path"], int(payload["mib"]), bool(payload.get("keep")))
    else:
        raise ValueError(f"unknown op {op!r}")
    return answer


if __name__ == "__main__":
    # PORT: process isolation hands each agent its own host port (8080 in namespace sandboxes).
    app.run(port=int(os.environ.get("PORT", "8080")))
