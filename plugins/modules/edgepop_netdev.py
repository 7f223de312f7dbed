# Documentation for the edgepop_netdev action plugin (plugins/action/edgepop_netdev.py).
# The action does all the work on the controller; this file only describes it to ansible-doc and
# ansible-lint, the usual pattern for an action plugin without a module.

DOCUMENTATION = r"""
---
module: edgepop_netdev
short_description: Push a Junos or EOS config with commit-confirm, post-checks and rollback
description:
  - Renders the device's config from its C(edgepop_device) fact (or takes O(config)), loads it
    as a merge or replace candidate through NAPALM and asks the device for the diff.
  - No diff, nothing committed. In check mode the candidate is discarded after the compare.
  - Otherwise archives the running config, commits with a confirm timer (O(revert_in)), checks
    over a new connection that management still answers with the intended hostname and that the
    BGP sessions which were up (and those in O(expect_bgp_up)) are up, then confirms; a failed
    check rolls the commit back (or leaves the device to revert on its timer) and fails the task.
  - Rejected lines fail the task before any commit, also on EOS over SSH where NAPALM itself
    would not notice them.
version_added: "0.1.0"
author:
  - edgepop maintainers
options:
  platform:
    description: NAPALM driver. Default the device's C(platform) from its structured config.
    type: str
    choices: [eos, junos]
  address:
    description: Management address of the device.
    type: str
    required: true
  port:
    description: TCP port of eAPI (EOS https/http), SSH (EOS ssh) or NETCONF (Junos); default the driver's.
    type: int
  username:
    description: Login name.
    type: str
    required: true
  password:
    description: Password.
    type: str
    default: ""
  transport:
    description: EOS only, how NAPALM talks to the switch.
    type: str
    choices: [https, http, ssh]
  timeout:
    description: Seconds to wait for the device to answer one request.
    type: int
    default: 30
  optional_args:
    description: Further NAPALM optional_args for the driver.
    type: dict
    default: {}
  template:
    description: Template under templates/ to render. Default the device's Junos or EOS template.
    type: str
  config:
    description: Config text to push instead of a rendered template.
    type: str
  mode:
    description:
      - C(merge) adds to and changes the running config; C(replace) makes the running config
        exactly the candidate (on Junos, C(load override)). Replace needs a candidate that
        includes the management access (users, management interface) or the post-check fails.
    type: str
    choices: [merge, replace]
    default: merge
  revert_in:
    description: Seconds before the device reverts an unconfirmed commit (Junos, whole minutes).
    type: int
    default: 300
  archive_dir:
    description: Directory on the controller that keeps C(HOST/TIMESTAMP.conf), the running config before each commit.
    type: path
  expect_bgp_up:
    description: BGP peer addresses that must be established after the commit, whether up before or not.
    type: list
    elements: str
    default: []
  bgp_wait:
    description: Seconds the BGP post-check waits for sessions to come up.
    type: float
    default: 60
  sc:
    description: Structured config to render; default the host's C(edgepop_device) fact.
    type: dict
attributes:
  action:
    support: full
    description: Runs on the controller and opens its own NAPALM connections.
  check_mode:
    support: full
    description: Loads, compares and discards; nothing is committed.
  diff_mode:
    support: full
    description: The device's diff, as C(diff.prepared).
  platform:
    platforms: [eos, junos]
requirements:
  - napalm (with the eos and junos drivers), the edgepop package
"""

EXAMPLES = r"""
- name: Push the rendered config, merged, with a five minute confirm timer
  edgepop_netdev:
    address: "{{ ansible_host }}"
    username: "{{ ansible_user }}"
    password: "{{ netdev_password }}"
    archive_dir: /var/lib/edgepop/archive
"""

RETURN = r"""
diff:
  description: The device's diff of the candidate against the running config.
  returned: always
  type: str
committed:
  description: Whether a change was committed and confirmed.
  returned: always
  type: bool
archive:
  description: Path of the archived running config, when a commit happened.
  returned: always
  type: str
checks:
  description: The post-checks that passed.
  returned: always
  type: list
  elements: str
  sample: ["management reachable", "BGP: 4 of 4 sessions established"]
error:
  description: "Kind of failure: unreachable, auth, locked, rejected, postcheck, commit, invalid."
  returned: failed
  type: str
"""
