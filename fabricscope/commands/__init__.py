"""One module per `fabricscope` subcommand, each with `add_arguments(parser)` and `run(args, config) -> int`
(`config`: the run's fabricscope.config.Config, read from --config once by the CLI)."""
