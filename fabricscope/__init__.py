"""fabricscope's wiring (like Akvorado's cmd/): the command line, one module per command, and the service
shell (signals, outbox, /metrics). The only package that imports collectors, pipeline and dashboards together."""
