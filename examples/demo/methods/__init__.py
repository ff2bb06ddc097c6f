"""The demo's methods: hello, notes.add, notes.list."""
