"""Promotion: the gate (a validated policy and a pure decision) and the registry state machine that
registers a candidate and moves the ``challenger`` / ``champion`` aliases."""
