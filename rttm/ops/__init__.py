"""The operator's process plumbing, above both flows.

``rttm run``'s supervisor, the multi-process cluster options, health probes and the
``--metrics-port`` server, the settings table of ``--help`` and the README, and the JSON
Schema export.
"""
