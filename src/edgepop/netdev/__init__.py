"""Pushing rendered configs to Junos routers and EOS switches through NAPALM.

`push.push_config` is the engine (load, diff, check mode, archive, commit-confirm, post-checks,
confirm or roll back); `drivers` builds and opens NAPALM drivers and turns vendor exceptions into
the errors of `errors`; `bootstrap` is the first contact with a factory-fresh EOS over SSH.
"""
