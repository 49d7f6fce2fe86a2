"""Python models in stub processes (EXECUTION_MODE "process"): see process.py for the
server side, __main__.py for the stub and channel.py for the wire between them."""
