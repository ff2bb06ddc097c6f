"""The methods of the cluster suite's servers: a session counter, whoami, and the event feed."""
