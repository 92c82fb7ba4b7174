"""One module per command (or command group member); each defines `register(app)`.

`p2pbak.cli` imports every module here and calls its `register`, so adding a command
is adding a module. Keep imports of heavy libraries (scipy, matplotlib) inside functions.
"""
