"""In-process peers for unit tests: an HTTP/1.1 server and an MCP backend driven by handler functions."""
