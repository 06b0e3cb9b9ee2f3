"""Alert rules on the metric points of each window, evaluated with Prometheus semantics.

``rules`` loads and checks rules files (TOML), ``engine`` moves each rule's series through
pending → firing → resolved, and ``rule_tests`` runs promtool-style unit tests of a rules file.
"""
