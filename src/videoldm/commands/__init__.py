"""The CLI's subcommands, one module each (``add_command(subparsers)`` registers it; see ``videoldm.cli``).

They import the library inside the function that runs them, so ``videoldm --help`` answers without
loading torch; their shared argument types live in :mod:`.options`.
"""
