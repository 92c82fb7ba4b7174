"""One module per command (or command group member); each defines `register(app)`.

`p2pbak.cli` imports the modules here and calls their `register`, so adding a command
is adding a module: named as the command (dashes as underscores), or `<group>_<name>.py`
for a command of a group, since a run loads only the modules its command's name picks.
Keep imports of heavy libraries (scipy, matplotlib) inside functions.
"""
