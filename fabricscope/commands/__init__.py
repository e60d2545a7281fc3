"""One module per `fabricscope` subcommand, each with `add_arguments(parser)` and `run(args) -> int`."""
