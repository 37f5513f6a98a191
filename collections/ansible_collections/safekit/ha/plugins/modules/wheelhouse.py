#!/usr/bin/python
# Copyright (c) safekit contributors
# Apache License 2.0 (see LICENSE in the repository)
"""safekit.ha.wheelhouse: a wheelhouse moved to the nodes as one archive."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wheelhouse
short_description: Pack a wheelhouse into one archive on the controller, unpack it on a node
version_added: 0.2.0
description:
  - Copying a wheelhouse directory to a node with M(ansible.builtin.copy) costs a checksum, a transfer and a
    module run per wheel (about 20 wheels for the engine, 30 with a cloud extra). This module lets a play move
    it as one file instead.
  - V(packed), run on the controller (C(delegate_to) C(localhost)), writes the C(*.whl) files of O(path)
    into the archive O(archive), byte-identical for the same wheels (sorted names, no timestamps or
    owners), so the M(ansible.builtin.copy) of the archive that follows reports a change only when a
    wheel changed.
  - V(unpacked) (on the node) makes O(path) hold exactly the wheels of O(archive), replacing the directory
    in one rename, and records the archive's digest in O(path) so that an unchanged archive changes nothing.
    Only plain C(*.whl) names are taken from the archive.
author: safekit contributors (@safekit)
attributes:
  check_mode:
    description: Reports whether the archive or the directory would change; changes nothing.
    support: full
  diff_mode:
    description: No diff is shown (binary wheels).
    support: none
  idempotent:
    description: The same wheels give the same archive, and the same archive leaves the directory as it is.
    support: full
options:
  state:
    description:
      - V(packed) writes O(archive) from the wheels of the directory O(path).
      - V(unpacked) makes the directory O(path) hold the wheels of O(archive).
    type: str
    choices: [packed, unpacked]
    required: true
  path:
    description: The wheelhouse directory.
    type: path
    required: true
  archive:
    description: The archive, an uncompressed tar file (wheels are compressed already).
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Pack the wheelhouse built on the controller
  safekit.ha.wheelhouse:
    state: packed
    path: "{{ playbook_dir }}/../.safekit/wheelhouse"
    archive: "{{ playbook_dir }}/../.safekit/wheelhouse.tar"
  delegate_to: localhost
  run_once: true
  become: false

- name: Copy it to the node (one file)
  ansible.builtin.copy:
    src: "{{ playbook_dir }}/../.safekit/wheelhouse.tar"
    dest: /opt/safekit/wheelhouse.tar
    mode: "0644"

- name: Unpack it
  safekit.ha.wheelhouse:
    state: unpacked
    path: /opt/safekit/wheelhouse
    archive: /opt/safekit/wheelhouse.tar
"""

RETURN = r"""
changed:
  description: The archive (V(packed)) or the directory (V(unpacked)) was, or would be, rewritten.
  returned: always
  type: bool
wheels:
  description: The wheel file names, sorted.
  returned: always
  type: list
  elements: str
sha256:
  description: The archive's SHA-256 (what V(unpacked) records in the directory).
  returned: when the archive exists (or, in check mode, would)
  type: str
"""

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["packed", "unpacked"], "required": True},
    "path": {"type": "path", "required": True},
    "archive": {"type": "path", "required": True},
}
DIGEST_FILE = ".safekit-wheelhouse.sha256"
WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+-]+\.whl$")
CHUNK = 1 << 20


def wheels_in(path):
    return sorted(
        name
        for name in os.listdir(path)
        if WHEEL_NAME.match(name) and os.path.isfile(os.path.join(path, name))
    )


def pack_bytes(path, names):
    """The archive's bytes: the wheels in name order, owner 0, mode 0644, time 0."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            full = os.path.join(path, name)
            info = tarfile.TarInfo(name)
            info.size = os.path.getsize(full)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(full, "rb") as f:
                tar.addfile(info, f)
    return out.getvalue()


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path):
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def write_atomically(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".wheelhouse-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def pack(module, path, archive):
    if not os.path.isdir(path):
        module.fail_json(msg=f"wheelhouse {path} is not a directory")
    names = wheels_in(path)
    if not names:
        module.fail_json(msg=f"no wheel (*.whl) in {path}")
    data = pack_bytes(path, names)
    sha256 = hashlib.sha256(data).hexdigest()
    changed = not os.path.isfile(archive) or file_sha256(archive) != sha256
    if changed and not module.check_mode:
        os.makedirs(os.path.dirname(os.path.abspath(archive)), exist_ok=True)
        write_atomically(archive, data)
    module.exit_json(changed=changed, wheels=names, sha256=sha256)


def archive_members(module, tar, archive):
    """The archive's wheels; anything but a regular file with a plain wheel name fails the task."""
    members = []
    for member in tar.getmembers():
        if not member.isfile() or not WHEEL_NAME.match(member.name):
            module.fail_json(
                msg=f"{archive}: {member.name!r} is not a plain wheel file; refusing the archive"
            )
        members.append(member)
    return members


def unpack(module, path, archive):
    if not os.path.isfile(archive):
        if module.check_mode:
            module.warn(f"archive {archive} is not on this node yet")
            module.exit_json(changed=True, wheels=[])
        module.fail_json(msg=f"archive {archive} is not a file on this node")
    sha256 = file_sha256(archive)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            names = sorted(m.name for m in archive_members(module, tar, archive))
    except tarfile.TarError as exc:
        module.fail_json(msg=f"{archive}: not a tar archive ({exc})")
    current = read_text(os.path.join(path, DIGEST_FILE)) if os.path.isdir(path) else None
    changed = current != sha256 or wheels_in(path) != names
    if changed and not module.check_mode:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".wheelhouse-", dir=parent)
        try:
            os.chmod(staging, 0o755)  # noqa: S103 - wheels are public, as a copied directory was
            with tarfile.open(archive, mode="r:") as tar:
                for member in archive_members(module, tar, archive):
                    source = tar.extractfile(member)
                    with open(os.path.join(staging, member.name), "wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
                    os.chmod(os.path.join(staging, member.name), 0o644)
            with open(os.path.join(staging, DIGEST_FILE), "w", encoding="ascii") as f:
                f.write(sha256 + "\n")
            old = None
            if os.path.lexists(path):
                old = staging + ".old"
                os.rename(path, old)
            os.rename(staging, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    module.exit_json(changed=changed, wheels=names, sha256=sha256)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    path, archive = module.params["path"], module.params["archive"]
    try:
        if module.params["state"] == "packed":
            pack(module, path, archive)
        else:
            unpack(module, path, archive)
    except OSError as exc:
        module.fail_json(msg=f"{exc.filename or path}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
