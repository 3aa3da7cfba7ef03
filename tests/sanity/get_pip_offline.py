"""Stand-in for the pip bootstrap script that ``ansible-test`` downloads.

ansible-test creates a virtual environment per sanity test and bootstraps pip in it by running a
``get-pip.py`` fetched from ci-files.testing.ansible.com, which CI here cannot reach. This script
does the same job with the standard library's ``ensurepip`` and then lets pip install the exact
packages ansible-test asked for from the package index. ``make sanity`` copies it into
ansible-test's cache under the name it looks for.
"""

import ensurepip
import os
import ssl
import sys

# ansible-test runs this with a scrubbed environment, and the pip that ensurepip bundles trusts
# only certifi's CAs. Trust the system's CA file instead, as pip >= 24.2 does by default, so that
# an index behind a TLS-inspecting proxy with a system-installed CA keeps working.
system_cafile = ssl.get_default_verify_paths().openssl_cafile
if system_cafile and os.path.exists(system_cafile):
    os.environ.setdefault("REQUESTS_CA_BUNDLE", system_cafile)

ensurepip.bootstrap(upgrade=True)

from pip._internal.cli.main import main  # noqa: E402  (pip exists only after the bootstrap)

# get-pip.py's own switches; pip install does not know them (not installing those is the default).
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

sys.exit(main(["install", *(arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY)]))
