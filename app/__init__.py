"""The composition root: the ``kashflow-permalink`` command wires core, doors and sandbox."""
