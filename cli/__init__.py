"""The `urbansense` command line: thin modules, one per command group, each exposing
`register(subparsers)`; main.py builds the parser, output.py prints tables and JSON,
errors.py holds the one error type. Nothing imports this package."""
