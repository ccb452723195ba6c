"""The ``circuitlab`` command line."""
