#!/usr/bin/python
# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: http_check
short_description: Send GET requests to a URL until it answers with the expected status and text
version_added: 0.1.0
description:
  - Sends C(GET) requests to O(url) until the answer has the status O(status_code) and, when
    O(contains) is given, a body that contains that text; at most O(attempts) requests, O(delay)
    seconds apart.
  - The smoke test of the C(knlab.serverless.app) role, and any check that an app answers.
  - Every option is checked before the first request. Read-only; runs normally in check mode.
  - Uses Ansible's own HTTP helpers (proxies from the environment, as M(ansible.builtin.uri));
    credentials never come from C(~/.netrc).
author:
  - knlab serverless developers (@knlab)
extends_documentation_fragment:
  - knlab.serverless._attributes
  - knlab.serverless._attributes.info_module
options:
  url:
    description:
      - The C(http://) or C(https://) URL to request, with an optional path and query, for
        example V(http://hello.default.example.com/) or V(http://127.0.0.1:8080/healthz).
      - At most 2048 ASCII characters (percent-encode the rest), without credentials, a fragment,
        spaces or control characters.
    type: str
    required: true
  headers:
    description:
      - Headers to send, for example C(Host) to reach a Knative Service through the ingress's
        address when its domain has no DNS.
      - Names are HTTP tokens; values are Latin-1 text without control characters. They are sent
        along redirects too, as M(ansible.builtin.uri) does.
    type: dict
    default: {}
  status_code:
    description: The HTTP status the answer must have, from V(100) to V(599).
    type: int
    default: 200
  contains:
    description:
      - Text the answer's body must contain (the body read in the charset of its C(Content-Type),
        UTF-8 when it names none). Empty accepts any body. Only the first 1 MiB of a body is read.
      - Tabs and line breaks are allowed; other control characters are not.
    type: str
    default: ""
  attempts:
    description:
      - How many requests at most, from V(1) to V(10000). A request that gets no answer counts as one.
    type: int
    default: 1
  delay:
    description: Seconds to wait after an attempt that did not get the expected answer, from V(0) to V(3600).
    type: float
    default: 1
  timeout:
    description: Seconds to wait for each answer, more than V(0) and at most V(86400).
    type: float
    default: 10
  validate_certs:
    description: Whether to verify the server's TLS certificate for C(https://) URLs.
    type: bool
    default: true
  ca_path:
    description: PEM file with the CA certificates that signed the server's certificate; it must exist.
    type: path
notes:
  - When the last attempt does not get the expected answer the module fails, with the status and the
    beginning of the body (or why there was no answer) in its message; RV(status), RV(content) and
    RV(attempts) are returned all the same, so a play can use C(failed_when) to word its own verdict.
seealso:
  - module: ansible.builtin.uri
    description: Any HTTP request, with a body, authentication and more.
"""

EXAMPLES = r"""
- name: Wait until the app says hello (at most 10 tries, 2 seconds apart)
  knlab.serverless.http_check:
    url: http://hello.default.example.com/
    contains: Hello
    attempts: 10
    delay: 2

- name: Call a Knative Service through the ingress's address, by its host name
  knlab.serverless.http_check:
    url: http://192.168.49.2:31080/
    headers:
      Host: hello.default.example.com
  register: hello

- name: Show what it said
  ansible.builtin.debug:
    msg: "{{ hello.content }}"
"""

RETURN = r"""
status:
  description: The status of the last answer; V(0) when the last attempt got no answer.
  returned: always
  type: int
  sample: 200
content:
  description:
    - The body of the last answer, read in the charset its C(Content-Type) names (UTF-8 when none;
      invalid bytes replaced); at most 1 MiB, the rest is cut off. Empty when there was no answer.
  returned: always
  type: str
  sample: "Hello World!\n"
error:
  description: Why the last attempt got no answer (connection refused, timeout, TLS...); empty when it got one.
  returned: always
  type: str
  sample: ""
attempts:
  description: How many requests were sent.
  returned: always
  type: int
  sample: 1
url:
  description: The URL that was requested.
  returned: always
  type: str
  sample: http://hello.default.example.com/
"""

import contextlib
import http.client
import os
import re
import ssl
import time
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError
from ansible_collections.knlab.serverless.plugins.module_utils._module import ServerlessModule, run
from ansible_collections.knlab.serverless.plugins.module_utils._registry import (
    HOST_HEADER_RE,
    describe_transport_error,
    host_and_port_fit,
)
from ansible_collections.knlab.serverless.plugins.module_utils._validation import (
    InvalidOption,
    check_range,
    check_wait_seconds,
    has_control_characters,
)

ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "headers": {"type": "dict", "default": {}},
    "status_code": {"type": "int", "default": 200},
    "contains": {"type": "str", "default": ""},
    "attempts": {"type": "int", "default": 1},
    "delay": {"type": "float", "default": 1},
    "timeout": {"type": "float", "default": 10},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
}
URL_MAX = 2048
BODY_MAX = 1024 * 1024
TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
USER_AGENT = "ansible-knlab.serverless-http_check"


def shown(url: str) -> str:
    """``url`` as messages show it: whatever stands before an ``@`` in its authority is hidden."""
    return re.sub(r"(?<=//)[^/?#]*@", "***@", url)


def validate(params: dict) -> None:
    """Every option, before the first request."""
    url = params["url"]
    if not isinstance(url, str):
        raise InvalidOption(f"url must be a string, got {type(url).__name__}")
    if re.match(r"[^/?#]*//[^/?#]*@", url):
        raise InvalidOption("url must not carry credentials (user:password@)")
    if not url or len(url) > URL_MAX or has_control_characters(url) or " " in url or not url.isascii():
        raise InvalidOption(
            f"url must be 1 to {URL_MAX} ASCII characters without spaces or control characters"
            " (percent-encode the rest)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as err:
        raise InvalidOption(f"url {url!r} is not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidOption(f"url {url!r} must start with http:// or https:// followed by a host")
    if parts.fragment or "#" in url:
        raise InvalidOption(f"url {url!r} must not contain a #fragment")
    if not HOST_HEADER_RE.fullmatch(parts.netloc) or not host_and_port_fit(parts.netloc):
        raise InvalidOption(
            f"url {url!r} has an invalid host or port: host labels of at most 63 characters (253 in all),"
            " a port between 1 and 65535"
        )
    headers = params["headers"]
    for name, value in headers.items():
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            raise InvalidOption(f"headers: {name!r} is not an HTTP header name")
        if not isinstance(value, str):
            raise InvalidOption(f"headers: the value of {name} must be a string, got {type(value).__name__}")
        if has_control_characters(value) or len(value) > 8192 or not _latin1(value):
            raise InvalidOption(
                f"headers: the value of {name} must be at most 8192 Latin-1 characters, without control characters"
            )
    check_range("status_code", params["status_code"], 100, 599)
    contains = params["contains"]
    if not isinstance(contains, str) or len(contains) > BODY_MAX or TEXT_CONTROL.search(contains):
        raise InvalidOption(
            f"contains must be text of at most {BODY_MAX} characters, without control characters other than"
            " tab, newline and carriage return"
        )
    check_range("attempts", params["attempts"], 1, 10000)
    check_range("delay", params["delay"], 0, 3600)
    check_wait_seconds("timeout", params["timeout"])
    ca_path = params["ca_path"]
    if ca_path is not None:
        if not ca_path:
            raise InvalidOption("ca_path must not be empty: leave it out to use the system's CA certificates")
        if not (os.path.isfile(ca_path) and os.access(ca_path, os.R_OK)):
            raise InvalidOption(f"ca_path {ca_path!r} is not a readable file")
        try:
            ssl.create_default_context(cafile=ca_path)
        except (ssl.SSLError, OSError, ValueError) as err:
            raise InvalidOption(f"ca_path {ca_path!r} holds no PEM CA certificate ({err})") from None


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _text(body: bytes, headers: Any) -> str:
    """The body as text, in the charset its Content-Type names (UTF-8 when none, or an unknown one)."""
    charset = "utf-8"
    with contextlib.suppress(AttributeError, TypeError):
        charset = headers.get_content_charset() or "utf-8"
    try:
        return body.decode(charset, "replace")
    except LookupError:
        return body.decode("utf-8", "replace")


def _answer(session: Request, url: str, headers: dict, timeout: float) -> tuple[int, str]:
    """(status, body text) of one GET; ``ServerlessError`` with one line when there is no answer."""
    try:
        response = session.open("GET", url, headers=headers)
    except HTTPError as err:
        try:
            body = err.read(BODY_MAX)
        except (OSError, http.client.HTTPException):
            body = b""
        return err.code, _text(body or b"", err.headers)
    except (URLError, UrlsConnectionError, OSError, http.client.HTTPException, ValueError) as err:
        raise ServerlessError(describe_transport_error(err, shown(url), timeout, what="server", option="url")) from None
    try:
        body = response.read(BODY_MAX)
    except (OSError, http.client.HTTPException) as err:
        raise ServerlessError(describe_transport_error(err, shown(url), timeout, what="server", option="url")) from None
    finally:
        response.close()
    return response.status, _text(body, response.headers)


def check(params: dict) -> dict:
    validate(params)
    session = Request(
        timeout=params["timeout"],
        # One TLS context for all attempts (Request builds one per request otherwise: about 25 ms
        # each, reading the system's CA certificates). validate() has read ca_path already.
        context=make_context(cafile=params["ca_path"], validate_certs=params["validate_certs"]),
        http_agent=USER_AGENT,
        use_netrc=False,
        follow_redirects="safe",
        # Sent along redirects too, as ansible.builtin.uri does: the Host of an ingress route among them.
        unredirected_headers=[],
    )
    expected, text = params["status_code"], params["contains"]
    result = {"status": 0, "content": "", "error": "", "attempts": 0, "url": params["url"]}
    for attempt in range(1, params["attempts"] + 1):
        result["attempts"] = attempt
        try:
            result["status"], result["content"] = _answer(session, params["url"], params["headers"], params["timeout"])
            result["error"] = ""
        except ServerlessError as err:
            result["status"], result["content"], result["error"] = 0, "", err.msg
        if result["status"] == expected and text in result["content"]:
            return result
        if attempt < params["attempts"]:
            time.sleep(params["delay"])
    wanted = f"HTTP {expected}" + (f" with a body containing {text!r}" if text else "")
    answer = f"{result['status']}: {result['content'][:300]!r}"
    got = answer if result["status"] else f"no answer ({result['error']})"
    tries = "1 attempt" if result["attempts"] == 1 else f"{result['attempts']} attempts"
    raise ServerlessError(f"{shown(params['url'])} did not answer {wanted} after {tries}; got {got}", **result)


def main() -> None:
    module = ServerlessModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    userinfo = re.match(r"[^/?#]*//([^/?#]*)@", module.params["url"] or "")
    if userinfo:  # refused below; masked in the result's invocation as well
        module.no_log_values.add(userinfo.group(1))
    run(module, lambda module: {"changed": False, **check(module.params)})


if __name__ == "__main__":
    main()
