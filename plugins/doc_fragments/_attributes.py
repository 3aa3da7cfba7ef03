# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Attribute descriptions shared by the modules of knlab.serverless (private fragment)."""

from __future__ import annotations


class ModuleDocFragment:
    # Descriptions of check_mode, diff_mode and idempotent; each module states its own support.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description:
      - Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # For modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    ACTIONGROUP_SERVERLESS = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/knlab.serverless.serverless) in C(module_defaults) to set defaults, such as the auth options,
        for this module.
    support: full
    membership:
      - knlab.serverless.serverless
"""
