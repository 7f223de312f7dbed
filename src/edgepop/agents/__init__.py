"""Long-running agents that keep a box's running state honest between playbook runs.

Each agent runs on the PoP's boxes with nothing but the standard library, pydantic and PyYAML, so
that `edgepop.agents.bundle` can ship it to a box whose Python has none of the controller's tools.
"""
