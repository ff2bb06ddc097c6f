"""Events of the load generator: ``publish`` sends one to every server, ``since`` reads what this server received."""
