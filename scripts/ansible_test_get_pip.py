"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test builds one virtualenv per sanity test and bootstraps pip in it with a script it
downloads from ansible's CI file server, which is not reachable from every machine that reaches
the package index. ansible-test looks for that script in ~/.ansible/test/cache/get_pip_X_Y.py
first (X.Y: the pip version of the installed ansible-test); `make sanity` puts this file there:

    python scripts/ansible_test_get_pip.py --install-into-cache

Run by ansible-test, it imports pip from the wheel that Python's ensurepip bundles (Debian:
python3-venv's /usr/share/python-wheels) and installs the pip version ansible-test asks for
(pip==X.Y) from the package index; the options get-pip.py takes and pip does not are dropped.
Standard library only: it runs in ansible-test's empty virtualenvs.
"""

import ensurepip
import glob
import os
import re
import shutil
import sys

GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")


def bundled_pip():
    """The pip wheel this Python carries, or None."""
    wheels = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
    wheels += sorted(glob.glob("/usr/share/python-wheels/pip-*.whl"))
    return wheels[0] if wheels else None


def install_into_cache():
    """Copy this file where the installed ansible-test looks for its bootstrap script."""
    import ansible_test  # noqa: PLC0415 - only this mode runs where ansible-test is installed

    source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(source, encoding="utf-8") as f:
        found = re.search(r"\bpip=['\"](\d+(?:\.\d+)*)['\"]", f.read())
    if found is None:
        sys.exit(f"get-pip stand-in: no default pip version in {source}")
    cache = os.path.expanduser(f"~/.ansible/test/cache/get_pip_{found[1].replace('.', '_')}.py")
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    shutil.copyfile(__file__, cache)
    return cache


def bootstrap(args):
    wheel = bundled_pip()
    if wheel is None:
        sys.exit("get-pip stand-in: no pip wheel bundled with this Python (Debian: apt install python3-venv)")
    sys.path.insert(0, wheel)
    from pip._internal.cli.main import main  # noqa: PLC0415 - from the wheel just put on the path

    return main(["install", *[a for a in args if a not in GET_PIP_ONLY]])


if __name__ == "__main__":
    if sys.argv[1:] == ["--install-into-cache"]:
        print(install_into_cache())
    else:
        sys.exit(bootstrap(sys.argv[1:]))
