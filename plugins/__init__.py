"""Built-in plugins, registered through the ``harness`` entry points."""
