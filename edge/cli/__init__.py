"""The `urbansense` command line. main.py builds the parser; each command group lives in
a module of its own that exposes `register(subparsers)`."""
